{#-
    Charlson comorbidity score of each episode from the ASSOCIATED diagnoses of all its stays
    (the main diagnosis is not used): Quan et al. (Med Care 2005) ICD-10 coding algorithm,
    original Charlson weights. Each category counts once per episode; when both levels of a
    condition are coded (mild/severe liver, diabetes without/with complications,
    malignancy/metastatic) only the worse one counts. Episodes without any match score 0.
-#}

with

stay_episodes as (

    select * from {{ ref('int_stay_episodes') }}

),

diagnoses as (

    select * from {{ ref('stg_diagnoses') }}

),

charlson_codes as (

    select * from {{ ref('ref_charlson_icd10') }}

),

charlson_categories as (

    select * from {{ ref('ref_charlson_categories') }}

),

episode_diagnoses as (

    select distinct
        stay_episodes.episode_id,
        diagnoses.icd10_code

    from diagnoses
    inner join stay_episodes
        on diagnoses.stay_id = stay_episodes.stay_id

),

matched as (

    {#- Prefixes are 3 or 4 characters (tested on the seed): one equality join per length. #}
    {%- for n in [3, 4] %}
    select distinct
        episode_diagnoses.episode_id,
        charlson_codes.charlson_category

    from episode_diagnoses
    inner join charlson_codes
        on charlson_codes.icd10_prefix = substr(episode_diagnoses.icd10_code, 1, {{ n }})
        and {{ dbt.length('charlson_codes.icd10_prefix') }} = {{ n }}
    {% if not loop.last %}union distinct{% endif %}
    {%- endfor %}

),

kept as (

    select
        matched.episode_id,
        matched.charlson_category,
        charlson_categories.charlson_weight

    from matched
    inner join charlson_categories
        on matched.charlson_category = charlson_categories.charlson_category
    left join matched as worse
        on matched.episode_id = worse.episode_id
        and worse.charlson_category = charlson_categories.superseded_by
    where worse.episode_id is null

),

scored as (

    select
        episode_id,
        cast(sum(charlson_weight) as {{ dbt.type_int() }}) as charlson_score,
        cast(count(*) as {{ dbt.type_int() }}) as charlson_category_count

    from kept
    group by episode_id

),

episodes as (

    select distinct episode_id from stay_episodes

)

select
    episodes.episode_id,
    coalesce(scored.charlson_score, 0) as charlson_score,
    coalesce(scored.charlson_category_count, 0) as charlson_category_count

from episodes
left join scored
    on episodes.episode_id = scored.episode_id
