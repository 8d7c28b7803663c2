{{
    config(
        partition_by=bq_partition_by('admission_date'),
        cluster_by=bq_cluster_by(['department']),
    )
}}

{#- One row per MCO stay, with its episode, diagnosis group and readable PMSI codes.
    partition_by / cluster_by apply on BigQuery only. -#}

with

stay_episodes as (

    select * from {{ ref('int_stay_episodes') }}

),

stays as (

    select * from {{ ref('stg_stays') }}

),

hospitals as (

    select * from {{ ref('stg_hospitals') }}

),

diagnosis_groups as (

    select * from {{ ref('ref_diagnosis_groups') }}

),

exit_modes as (

    select * from {{ ref('ref_exit_modes') }}

),

provenances as (

    select * from {{ ref('ref_provenances') }}

)

select
    stays.stay_id,
    stay_episodes.episode_id,
    stay_episodes.stay_rank_in_episode,
    stay_episodes.episode_stay_count,
    stays.patient_id,
    stays.hospital_id,
    hospitals.hospital_category,
    stays.rsa_num,
    stays.admission_date,
    stays.discharge_date,
    stays.length_of_stay,
    stays.icd10_code,
    stays.related_icd10_code,
    coalesce(diagnosis_groups.diagnosis_group, 'OTHER') as diagnosis_group,
    diagnosis_groups.icd10_label_fr as icd10_category_label,
    stays.ghm_code,
    stays.entry_mode,
    stays.entry_source,
    provenances.provenance_label as entry_source_label,
    coalesce(stays.entry_source = '5', false) as is_emergency,
    stays.discharge_mode,
    exit_modes.exit_mode_label as discharge_mode_label,
    stays.discharge_destination,
    stays.age,
    stays.sex,
    stays.department,
    stays.stay_cost

from stays
inner join stay_episodes
    on stays.stay_id = stay_episodes.stay_id
left join hospitals
    on stays.hospital_id = hospitals.hospital_id
left join diagnosis_groups
    on substr(stays.icd10_code, 1, 3) = diagnosis_groups.icd10_category
left join exit_modes
    on stays.discharge_mode = exit_modes.exit_mode
left join provenances
    on stays.entry_source = provenances.provenance
