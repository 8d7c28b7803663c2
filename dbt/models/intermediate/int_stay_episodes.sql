{#-
    Episode chaining: a stay discharged by transfer (discharge_mode 0, 6 or 7) followed by
    another stay of the same patient admitted 0 to `transfer_gap_days` days later continues the
    same episode ('transfer'); so does a stay admitted the very day of a home discharge
    (discharge_mode 8) to the same hospital with the same 3-character main diagnosis
    ('same_day_return': one stay continued, as CMS combines same-day same-condition returns).
    Chains can hold any number of stays. The episode id is the stay_id of the first stay of the
    chain; episode_link says how a later stay joined it. One row per stay.
-#}

with

stays as (

    select * from {{ ref('stg_stays') }}

),

with_previous as (

    select
        stays.*,
        lag(discharge_date) over patient_stays as previous_discharge_date,
        lag(discharge_mode) over patient_stays as previous_discharge_mode,
        lag(hospital_id) over patient_stays as previous_hospital_id,
        lag(icd10_code) over patient_stays as previous_icd10_code

    from stays
    window patient_stays as (
        partition by patient_id order by admission_date, discharge_date, stay_id
    )

),

flagged as (

    select
        with_previous.*,
        case
            when previous_discharge_mode in ('0', '6', '7')
                and {{ days_between('previous_discharge_date', 'admission_date') }}
                    between 0 and {{ var('transfer_gap_days') }}
                then 'transfer'
            when previous_discharge_mode = '8'
                and {{ days_between('previous_discharge_date', 'admission_date') }} = 0
                and hospital_id = previous_hospital_id
                and substr(icd10_code, 1, 3) = substr(previous_icd10_code, 1, 3)
                then 'same_day_return'
        end as episode_link

    from with_previous

),

linked as (

    select
        flagged.*,
        case when episode_link is null then 1 else 0 end as starts_episode

    from flagged

),

numbered as (

    select
        linked.*,
        sum(starts_episode) over (
            partition by patient_id
            order by admission_date, discharge_date, stay_id
            rows between unbounded preceding and current row
        ) as patient_episode_number

    from linked

),

chained as (

    select
        stay_id,
        patient_id,
        first_value(stay_id) over episode_stays as episode_id,
        row_number() over episode_stays_ordered as stay_rank_in_episode,
        count(*) over episode_stays as episode_stay_count,
        episode_link,
        patient_episode_number,
        hospital_id,
        admission_date,
        discharge_date,
        length_of_stay,
        icd10_code,
        ghm_code,
        entry_mode,
        entry_source,
        discharge_mode,
        discharge_destination,
        age,
        sex,
        department,
        stay_cost

    from numbered
    window
        episode_stays as (
            partition by patient_id, patient_episode_number
            order by admission_date, discharge_date, stay_id
            rows between unbounded preceding and unbounded following
        ),
        episode_stays_ordered as (
            partition by patient_id, patient_episode_number
            order by admission_date, discharge_date, stay_id
        )

)

select * from chained
