with

source as (

    select * from {{ source('clean', 'diagnoses') }}

),

renamed as (

    select
        cast(stay_id as {{ dbt.type_string() }}) as stay_id,
        cast(hospital_id as {{ dbt.type_string() }}) as hospital_id,
        cast(pmsi_year as {{ dbt.type_int() }}) as pmsi_year,
        cast(rsa_num as {{ dbt.type_bigint() }}) as rsa_num,
        cast(diagnosis_rank as {{ dbt.type_int() }}) as diagnosis_rank,
        upper(replace(trim(icd10_code), '.', '')) as icd10_code

    from source
    -- associated diagnoses of stays dropped by the PMSI filters go with them
    where not exists (select 1 from {{ ref('stg_pmsi_exclusions') }} as excluded
                      where excluded.stay_id = source.stay_id)

)

select * from renamed
