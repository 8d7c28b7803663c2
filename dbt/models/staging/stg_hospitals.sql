with

source as (

    select * from {{ source('clean', 'hospitals') }}

),

renamed as (

    select
        cast(hospital_id as {{ dbt.type_string() }}) as hospital_id,
        cast(hospital_name as {{ dbt.type_string() }}) as hospital_name,
        cast(postal_code as {{ dbt.type_string() }}) as postal_code,
        cast(department as {{ dbt.type_string() }}) as department,
        cast(category_code as {{ dbt.type_string() }}) as category_code,
        cast(category as {{ dbt.type_string() }}) as hospital_category,
        cast(beds as {{ dbt.type_int() }}) as beds

    from source

)

select * from renamed
