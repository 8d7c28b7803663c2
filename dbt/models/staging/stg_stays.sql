with

source as (

    select * from {{ source('clean', 'stays') }}

),

renamed as (

    select
        ----------  ids
        cast(stay_id as {{ dbt.type_string() }}) as stay_id,
        cast(hospital_id as {{ dbt.type_string() }}) as hospital_id,
        cast(rsa_num as {{ dbt.type_bigint() }}) as rsa_num,
        cast(patient_id as {{ dbt.type_string() }}) as patient_id,

        ---------- dates
        cast(admission_date as date) as admission_date,
        cast(discharge_date as date) as discharge_date,
        cast(length_of_stay as {{ dbt.type_int() }}) as length_of_stay,

        ---------- medical coding (ICD-10 without dot, upper case)
        upper(replace(trim(icd10_code), '.', '')) as icd10_code,
        nullif(upper(replace(trim(related_icd10_code), '.', '')), '') as related_icd10_code,
        upper(trim(ghm_code)) as ghm_code,

        ---------- PMSI entry / exit (empty codes become null)
        nullif(trim(entry_mode), '') as entry_mode,
        nullif(trim(entry_source), '') as entry_source,
        nullif(trim(discharge_mode), '') as discharge_mode,
        nullif(trim(discharge_destination), '') as discharge_destination,

        ---------- patient at admission
        cast(age as {{ dbt.type_int() }}) as age,
        cast(sex as {{ dbt.type_int() }}) as sex,
        cast(department as {{ dbt.type_string() }}) as department,

        ---------- valuation
        cast(stay_cost as {{ type_double() }}) as stay_cost

    from source

)

select * from renamed
