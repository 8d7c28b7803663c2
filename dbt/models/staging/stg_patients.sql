with

source as (

    select * from {{ source('clean', 'patients') }}

),

renamed as (

    select
        cast(patient_id as {{ dbt.type_string() }}) as patient_id,
        cast(birth_rank as {{ dbt.type_int() }}) as birth_rank,
        cast(sex as {{ dbt.type_int() }}) as sex,
        cast(birth_year as {{ dbt.type_int() }}) as birth_year,
        cast(department as {{ dbt.type_string() }}) as department,
        cast(commune as {{ dbt.type_string() }}) as commune,
        cast(death_date as date) as death_date

    from source

)

select * from renamed
