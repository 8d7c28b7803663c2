{#-
    What is known about the patient at each episode, from data strictly before its admission
    (so never after its discharge): unplanned episodes (neither planned care nor planned
    procedures) admitted in the 182 / 365 days before
    (and those through the ED), days since the last discharge, distinct ATC level-3 classes
    dispensed in the 90 days before admission. One row per episode. `history_as_of_date` is
    the latest date any of these used (tested not after the episode's discharge).
-#}

with

episodes as (

    select * from {{ ref('int_episodes') }}

),

dispensings as (

    select * from {{ ref('stg_dispensings') }}

),

prior_episodes as (

    select
        episodes.episode_id,
        count(case when not (earlier.is_planned_care or earlier.is_planned_procedure)
            and {{ days_between('earlier.admission_date', 'episodes.admission_date') }}
                <= {{ var('history_short_days') }} then 1 end) as prior_stays_6m,
        count(case when not (earlier.is_planned_care or earlier.is_planned_procedure) then 1 end) as prior_stays_12m,
        count(case when not (earlier.is_planned_care or earlier.is_planned_procedure) and earlier.is_emergency
            and {{ days_between('earlier.admission_date', 'episodes.admission_date') }}
                <= {{ var('history_short_days') }} then 1 end) as prior_emergency_6m,
        count(case when not (earlier.is_planned_care or earlier.is_planned_procedure) and earlier.is_emergency then 1 end)
            as prior_emergency_12m,
        max(case when not (earlier.is_planned_care or earlier.is_planned_procedure) then earlier.admission_date end)
            as last_prior_admission_date

    from episodes
    inner join episodes as earlier
        on episodes.patient_id = earlier.patient_id
        and {{ days_between('earlier.admission_date', 'episodes.admission_date') }}
            between 1 and {{ var('history_long_days') }}
    group by episodes.episode_id

),

previous_discharges as (

    {#- The last discharge (any episode, planned or not) on or before this admission. #}
    select
        episodes.episode_id,
        max(earlier.discharge_date) as last_discharge_date

    from episodes
    inner join episodes as earlier
        on episodes.patient_id = earlier.patient_id
        and earlier.episode_id <> episodes.episode_id
        and earlier.discharge_date <= episodes.admission_date
        and (
            earlier.admission_date < episodes.admission_date
            or (earlier.admission_date = episodes.admission_date
                and earlier.episode_id < episodes.episode_id)
        )
    group by episodes.episode_id

),

prior_drugs as (

    select
        episodes.episode_id,
        count(distinct dispensings.atc_class) as prior_atc_classes_90d,
        max(dispensings.dispensing_date) as last_dispensing_date

    from episodes
    inner join dispensings
        on episodes.patient_id = dispensings.patient_id
        and {{ days_between('dispensings.dispensing_date', 'episodes.admission_date') }}
            between 1 and {{ var('dispensing_lookback_days') }}
    group by episodes.episode_id

),

history as (

    select
        episodes.episode_id,
        episodes.patient_id,
        episodes.admission_date,
        episodes.discharge_date,
        cast(coalesce(prior_episodes.prior_stays_6m, 0) as {{ dbt.type_int() }}) as prior_stays_6m,
        cast(coalesce(prior_episodes.prior_stays_12m, 0) as {{ dbt.type_int() }}) as prior_stays_12m,
        cast(coalesce(prior_episodes.prior_emergency_6m, 0) as {{ dbt.type_int() }}) as prior_emergency_6m,
        cast(coalesce(prior_episodes.prior_emergency_12m, 0) as {{ dbt.type_int() }}) as prior_emergency_12m,
        previous_discharges.last_discharge_date,
        cast(
            {{ days_between('previous_discharges.last_discharge_date', 'episodes.admission_date') }}
            as {{ dbt.type_int() }}
        ) as days_since_last_discharge,
        cast(coalesce(prior_drugs.prior_atc_classes_90d, 0) as {{ dbt.type_int() }}) as prior_atc_classes_90d,
        nullif(
            greatest(
                coalesce(prior_episodes.last_prior_admission_date, {{ date_literal('1900-01-01') }}),
                coalesce(previous_discharges.last_discharge_date, {{ date_literal('1900-01-01') }}),
                coalesce(prior_drugs.last_dispensing_date, {{ date_literal('1900-01-01') }})
            ),
            {{ date_literal('1900-01-01') }}
        ) as history_as_of_date

    from episodes
    left join prior_episodes
        on episodes.episode_id = prior_episodes.episode_id
    left join previous_discharges
        on episodes.episode_id = previous_discharges.episode_id
    left join prior_drugs
        on episodes.episode_id = prior_drugs.episode_id

)

select * from history
