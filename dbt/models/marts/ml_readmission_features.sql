{#-
    The ML feature mart: one row per index stay (episode), only what is known at its discharge,
    with exactly the columns of pipelines/contracts.py FEATURE_SCHEMA (key, split date,
    features, label). Exported by pipelines/features.py.
-#}

with

readmissions as (

    select * from {{ ref('fct_readmissions') }}

),

episodes as (

    select * from {{ ref('int_episodes') }}

),

history as (

    select * from {{ ref('int_patient_history') }}

),

charlson as (

    select * from {{ ref('int_episode_charlson') }}

),

hospitals as (

    select * from {{ ref('stg_hospitals') }}

),

departments as (

    select * from {{ ref('ref_departments') }}

),

index_stays as (

    select * from readmissions where is_index

)

select
    index_stays.stay_id,
    episodes.discharge_date,
    cast(episodes.age as {{ dbt.type_int() }}) as age,
    cast(episodes.sex as {{ dbt.type_int() }}) as sex,
    cast(departments.poverty_rate as {{ type_double() }}) as deprivation_rate,
    cast(episodes.length_of_stay as {{ dbt.type_int() }}) as length_of_stay,
    cast(case when episodes.is_emergency then 1 else 0 end as {{ dbt.type_int() }}) as emergency_admission,
    cast(charlson.charlson_score as {{ dbt.type_int() }}) as charlson_score,
    history.prior_stays_6m,
    history.prior_stays_12m,
    history.prior_emergency_6m,
    history.prior_emergency_12m,
    history.days_since_last_discharge,
    cast(episodes.stay_cost as {{ type_double() }}) as stay_cost,
    history.prior_atc_classes_90d,
    cast(
        {{ lace_score('episodes.length_of_stay', 'episodes.is_emergency',
                      'charlson.charlson_score', 'history.prior_emergency_6m') }}
        as {{ dbt.type_int() }}
    ) as lace_score,
    episodes.department,
    episodes.diagnosis_group,
    hospitals.hospital_category,
    case
        when episodes.discharge_mode = '8' then 'home'
        when episodes.discharge_destination = '2' then 'transfer_ssr'
        when episodes.discharge_destination = '1' then 'transfer_mco'
        else 'other'
    end as discharge_destination,
    cast(index_stays.readmitted_30d as {{ dbt.type_int() }}) as readmitted_30d

from index_stays
inner join episodes
    on index_stays.episode_id = episodes.episode_id
inner join history
    on index_stays.episode_id = history.episode_id
inner join charlson
    on index_stays.episode_id = charlson.episode_id
left join hospitals
    on episodes.last_hospital_id = hospitals.hospital_id
left join departments
    on episodes.department = departments.department
