with

source as (

    select * from {{ source('clean', 'diagnoses') }}

),

renamed as (

    select
        cast(stay_id as {{ dbt.type_string() }}) as stay_id,
        cast(hospital_id as {{ dbt.type_string() }}) as hospital_id,
        cast(rsa_num as {{ dbt.type_bigint() }}) as rsa_num,
        cast(diagnosis_rank as {{ dbt.type_int() }}) as diagnosis_rank,
        upper(replace(trim(icd10_code), '.', '')) as icd10_code

    from source

)

select * from renamed
