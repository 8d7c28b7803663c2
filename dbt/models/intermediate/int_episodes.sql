{#-
    One row per episode (transfer / same-day chain): first admission, last discharge and exit,
    summed cost, patient attributes and main diagnosis of the first stay, hospital of the last
    stay, and the flags of the readmission methodology: death, planned care (always planned),
    planned procedure (potentially planned, no acute diagnosis), discharge against medical
    advice, obstetrics, minor.

    Planned readmissions, in the spirit of the CMS planned readmission algorithm (v4):
    * always planned (is_planned_care): dialysis Z49, radiotherapy Z510, chemotherapy Z511,
      sessions (GHM CMD 28) and transplants (GHM CMD 27);
    * potentially planned (is_planned_procedure): a surgical or interventional GHM (third
      character C or K) whose main diagnosis is not acute (seed ref_acute_diagnoses).
    A discharge against medical advice is SOR_MOD 8 with the associated diagnosis Z532 on the
    last stay (MS_SOR_V has no code of its own for it).
-#}

with

stay_episodes as (

    select * from {{ ref('int_stay_episodes') }}

),

diagnosis_groups as (

    select * from {{ ref('ref_diagnosis_groups') }}

),

acute_diagnoses as (

    select * from {{ ref('ref_acute_diagnoses') }}

),

against_advice_stays as (

    select distinct stay_id
    from {{ ref('stg_diagnoses') }}
    where icd10_code = 'Z532'

),

first_stays as (

    select * from stay_episodes where stay_rank_in_episode = 1

),

last_stays as (

    select * from stay_episodes where stay_rank_in_episode = episode_stay_count

),

acute_first_stays as (

    select distinct first_stays.stay_id
    from first_stays
    inner join acute_diagnoses
        on {{ starts_with('first_stays.icd10_code', 'acute_diagnoses.icd10_prefix') }}

),

flags as (

    select
        first_stays.episode_id,
        (
            {{ starts_with('first_stays.icd10_code', "'Z49'") }}
            or {{ starts_with('first_stays.icd10_code', "'Z510'") }}
            or {{ starts_with('first_stays.icd10_code', "'Z511'") }}
            or coalesce({{ starts_with('first_stays.ghm_code', "'28'") }}, false)
            or coalesce({{ starts_with('first_stays.ghm_code', "'27'") }}, false)
        ) as is_planned_care,
        coalesce(substr(first_stays.ghm_code, 3, 1) in ('C', 'K'), false)
            and acute_first_stays.stay_id is null as is_potentially_planned_elective

    from first_stays
    left join acute_first_stays
        on first_stays.stay_id = acute_first_stays.stay_id

),

totals as (

    select
        episode_id,
        max(discharge_date) as discharge_date,
        round(sum(stay_cost), 2) as stay_cost  -- cents: float sums must not depend on thread order

    from stay_episodes
    group by episode_id

),

episodes as (

    select
        first_stays.episode_id,
        first_stays.patient_id,
        first_stays.episode_stay_count as stay_count,
        first_stays.hospital_id as first_hospital_id,
        last_stays.hospital_id as last_hospital_id,
        last_stays.stay_id as last_stay_id,

        first_stays.admission_date,
        totals.discharge_date,
        {{ days_between('first_stays.admission_date', 'totals.discharge_date') }} as length_of_stay,

        first_stays.icd10_code,
        first_stays.ghm_code,
        coalesce(diagnosis_groups.diagnosis_group, 'OTHER') as diagnosis_group,
        first_stays.entry_mode,
        first_stays.entry_source,
        last_stays.discharge_mode,
        last_stays.discharge_destination,

        first_stays.age,
        first_stays.sex,
        first_stays.department,
        totals.stay_cost,

        coalesce(first_stays.entry_source = '5', false) as is_emergency,
        flags.is_planned_care,
        flags.is_potentially_planned_elective and not flags.is_planned_care as is_planned_procedure,
        coalesce(last_stays.discharge_mode = '8', false)
            and against_advice_stays.stay_id is not null as is_against_medical_advice,
        (
            {{ starts_with('first_stays.icd10_code', "'O'") }}
            or coalesce({{ starts_with('first_stays.ghm_code', "'14'") }}, false)
        ) as is_obstetric,
        first_stays.age < {{ var('minor_age') }} as is_minor,
        coalesce(last_stays.discharge_mode = '9', false) as is_death

    from first_stays
    inner join last_stays
        on first_stays.episode_id = last_stays.episode_id
    inner join totals
        on first_stays.episode_id = totals.episode_id
    inner join flags
        on first_stays.episode_id = flags.episode_id
    left join against_advice_stays
        on last_stays.stay_id = against_advice_stays.stay_id
    left join diagnosis_groups
        on substr(first_stays.icd10_code, 1, 3) = diagnosis_groups.icd10_category

)

select * from episodes
