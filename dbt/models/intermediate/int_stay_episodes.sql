{#-
    Transfer chaining: a stay discharged by transfer (discharge_mode 0, 6 or 7) followed by
    another stay of the same patient admitted 0 to `transfer_gap_days` days later continues the
    same episode. Chains can hold any number of stays. The episode id is the stay_id of the
    first stay of the chain. One row per stay.
-#}

with

stays as (

    select * from {{ ref('stg_stays') }}

),

with_previous as (

    select
        stays.*,
        lag(discharge_date) over patient_stays as previous_discharge_date,
        lag(discharge_mode) over patient_stays as previous_discharge_mode

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
                then 0
            else 1
        end as starts_episode

    from with_previous

),

numbered as (

    select
        flagged.*,
        sum(starts_episode) over (
            partition by patient_id
            order by admission_date, discharge_date, stay_id
            rows between unbounded preceding and current row
        ) as patient_episode_number

    from flagged

),

chained as (

    select
        stay_id,
        patient_id,
        first_value(stay_id) over episode_stays as episode_id,
        row_number() over episode_stays_ordered as stay_rank_in_episode,
        count(*) over episode_stays as episode_stay_count,
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
