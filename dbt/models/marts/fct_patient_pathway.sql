{{
    config(
        partition_by=bq_partition_by('admission_date'),
        cluster_by=bq_cluster_by(['department']),
    )
}}

{#- Each patient's pathway, stay after stay (LAG / LEAD over the patient's stays): previous
    discharge and diagnosis, days since the previous discharge, rank, next admission. The next
    admission looks ahead: this is a descriptive table, never a source of model features. -#}

with

stays as (

    select * from {{ ref('fct_stays') }}

),

pathway as (

    select
        stay_id,
        episode_id,
        patient_id,
        department,
        admission_date,
        discharge_date,
        icd10_code,
        diagnosis_group,
        row_number() over patient_stays as stay_rank,
        sum(case when stay_rank_in_episode = 1 then 1 else 0 end) over (
            partition by patient_id order by admission_date, discharge_date, stay_id
            rows between unbounded preceding and current row
        ) as episode_rank,
        lag(stay_id) over patient_stays as previous_stay_id,
        lag(discharge_date) over patient_stays as previous_discharge_date,
        lag(icd10_code) over patient_stays as previous_icd10_code,
        lag(diagnosis_group) over patient_stays as previous_diagnosis_group,
        lead(stay_id) over patient_stays as next_stay_id,
        lead(admission_date) over patient_stays as next_admission_date

    from stays
    window patient_stays as (
        partition by patient_id order by admission_date, discharge_date, stay_id
    )

)

select
    stay_id,
    episode_id,
    patient_id,
    department,
    stay_rank,
    episode_rank,
    admission_date,
    discharge_date,
    icd10_code,
    diagnosis_group,
    previous_stay_id,
    previous_discharge_date,
    {{ days_between('previous_discharge_date', 'admission_date') }} as days_since_previous_discharge,
    previous_icd10_code,
    previous_diagnosis_group,
    next_stay_id,
    next_admission_date,
    {{ days_between('discharge_date', 'next_admission_date') }} as days_to_next_admission

from pathway
