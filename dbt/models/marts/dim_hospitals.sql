with

hospitals as (

    select * from {{ ref('stg_hospitals') }}

),

departments as (

    select * from {{ ref('ref_departments') }}

)

select
    hospitals.hospital_id,
    hospitals.hospital_name,
    hospitals.postal_code,
    hospitals.department,
    departments.department_label,
    hospitals.category_code,
    hospitals.hospital_category,
    hospitals.beds

from hospitals
left join departments
    on hospitals.department = departments.department
