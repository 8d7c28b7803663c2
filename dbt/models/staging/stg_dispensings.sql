with

source as (

    select * from {{ source('clean', 'dispensings') }}

),

renamed as (

    select
        cast(dispensing_id as {{ dbt.type_string() }}) as dispensing_id,
        cast(patient_id as {{ dbt.type_string() }}) as patient_id,
        cast(dispensing_date as date) as dispensing_date,
        cast(cip13 as {{ dbt.type_string() }}) as cip13,
        upper(trim(atc_code)) as atc_code,
        -- ATC level 3 (pharmacological subgroup): first 4 characters, e.g. R03A
        substr(upper(trim(atc_code)), 1, 4) as atc_class,
        cast(boxes as {{ dbt.type_int() }}) as boxes,
        cast(amount as {{ type_double() }}) as amount

    from source

)

select * from renamed
