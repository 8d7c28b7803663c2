{#-
    Every patient seen in the stays, with the beneficiary record when there is one: a
    beneficiary quarantined by the cleaner keeps their stays, so the attributes fall back to
    those of the stays (sex, residence department of the latest stay).
-#}

with

stays as (

    select * from {{ ref('int_stay_episodes') }}

),

patients as (

    select * from {{ ref('stg_patients') }}

),

departments as (

    select * from {{ ref('ref_departments') }}

),

seen as (

    select
        patient_id,
        min(admission_date) as first_admission_date,
        max(discharge_date) as last_discharge_date,
        count(*) as stay_count,
        count(distinct episode_id) as episode_count

    from stays
    group by patient_id

),

latest_stay as (

    select patient_id, sex, department
    from (
        select
            patient_id,
            sex,
            department,
            row_number() over (
                partition by patient_id order by admission_date desc, stay_id desc
            ) as recency
        from stays
    ) as ranked
    where recency = 1

)

select
    seen.patient_id,
    patients.patient_id is not null as has_beneficiary_record,
    coalesce(patients.sex, latest_stay.sex) as sex,
    patients.birth_year,
    coalesce(patients.department, latest_stay.department) as department,
    departments.department_label,
    departments.poverty_rate,
    patients.commune,
    patients.death_date,
    seen.first_admission_date,
    seen.last_discharge_date,
    seen.stay_count,
    seen.episode_count

from seen
left join patients
    on seen.patient_id = patients.patient_id
left join latest_stay
    on seen.patient_id = latest_stay.patient_id
left join departments
    on coalesce(patients.department, latest_stay.department) = departments.department
