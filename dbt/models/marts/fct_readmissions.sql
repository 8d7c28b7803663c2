{{
    config(
        partition_by=bq_partition_by('admission_date'),
        cluster_by=bq_cluster_by(['department']),
    )
}}

{#-
    The 30-day readmission definition, in one place (CMS hospital-wide style, RH30-inspired;
    README "The 30-day readmission definition" says where it differs from both).

    One row per stay. Index stays are the first stays of episodes (transfer or same-day chains,
    int_stay_episodes), except, in this order of precedence: death at discharge ('death'),
    always-planned care ('planned_care': dialysis, chemotherapy, radiotherapy, sessions,
    transplants), planned procedures ('planned_procedure': surgical / interventional GHM without
    an acute main diagnosis), discharges against medical advice ('against_medical_advice'),
    obstetrics ('obstetrics'), minors ('minor'), episodes admitted less than `lookback_days`
    after the data start, whose history features would be truncated ('lookback'), and episodes
    discharged less than `readmission_window_days` before the data end, whose follow-up is
    incomplete ('censored'). Later stays of a chain are 'transfer' or 'same_day_return'.

    The readmission of an index episode is the FIRST unplanned episode (neither planned care
    nor a planned procedure) of the same patient admitted 0 to `readmission_window_days` days
    after the index discharge (day 30 counts, day 31 does not). A same-day admission counts,
    unless it is the same hospital and the same diagnosis after a home discharge: that one was
    chained into the index episode. readmitted_30d, readmission_stay_id and days_to_readmission
    are null for non-index stays.
-#}

with

stay_episodes as (

    select * from {{ ref('int_stay_episodes') }}

),

episodes as (

    select * from {{ ref('int_episodes') }}

),

classified as (

    select
        episodes.*,
        case
            when is_death then 'death'
            when is_planned_care then 'planned_care'
            when is_planned_procedure then 'planned_procedure'
            when is_against_medical_advice then 'against_medical_advice'
            when is_obstetric then 'obstetrics'
            when is_minor then 'minor'
            when {{ days_between(data_start_date(), 'admission_date') }}
                < {{ var('lookback_days') }} then 'lookback'
            when {{ days_between('discharge_date', data_end_date()) }}
                < {{ var('readmission_window_days') }} then 'censored'
        end as episode_exclusion_reason

    from episodes

),

readmission_candidates as (

    select
        index_episodes.episode_id,
        later.episode_id as readmission_episode_id,
        {{ days_between('index_episodes.discharge_date', 'later.admission_date') }} as days_to_readmission,
        row_number() over (
            partition by index_episodes.episode_id
            order by later.admission_date, later.discharge_date, later.episode_id
        ) as candidate_rank

    from classified as index_episodes
    inner join episodes as later
        on index_episodes.patient_id = later.patient_id
        and later.episode_id <> index_episodes.episode_id
        and not later.is_planned_care
        and not later.is_planned_procedure
        and {{ days_between('index_episodes.discharge_date', 'later.admission_date') }}
            between 0 and {{ var('readmission_window_days') }}
    where index_episodes.episode_exclusion_reason is null

),

first_readmissions as (

    select * from readmission_candidates where candidate_rank = 1

),

stays as (

    select
        stay_episodes.stay_id,
        stay_episodes.episode_id,
        stay_episodes.patient_id,
        stay_episodes.stay_rank_in_episode,
        stay_episodes.admission_date,
        stay_episodes.discharge_date,
        classified.admission_date as episode_admission_date,
        classified.discharge_date as episode_discharge_date,
        classified.department,
        classified.diagnosis_group,
        classified.stay_cost as episode_cost,
        case
            when stay_episodes.stay_rank_in_episode > 1
                then coalesce(stay_episodes.episode_link, 'transfer')
            else classified.episode_exclusion_reason
        end as exclusion_reason

    from stay_episodes
    inner join classified
        on stay_episodes.episode_id = classified.episode_id

)

select
    stays.stay_id,
    stays.episode_id,
    stays.patient_id,
    stays.stay_rank_in_episode,
    stays.admission_date,
    stays.discharge_date,
    stays.episode_admission_date,
    stays.episode_discharge_date,
    stays.department,
    stays.diagnosis_group,
    stays.episode_cost,
    stays.exclusion_reason is null as is_index,
    stays.exclusion_reason,
    case
        when stays.exclusion_reason is null
            then case when first_readmissions.readmission_episode_id is not null then 1 else 0 end
    end as readmitted_30d,
    first_readmissions.readmission_episode_id as readmission_stay_id,
    first_readmissions.days_to_readmission

from stays
left join first_readmissions
    on stays.episode_id = first_readmissions.episode_id
    and stays.stay_rank_in_episode = 1
