{#
    Clean stays the standard PMSI MCO filters exclude from every analysis, one row per stay with
    the first filter that applies (error GHM, then control codes, then geographic FINESS).
#}
with

source as (

    select * from {{ source('clean', 'stays') }}

),

geographic as (

    select finess from {{ ref('ref_pmsi_geographic_finess') }}

)

select
    cast(source.stay_id as {{ dbt.type_string() }}) as stay_id,
    cast(source.hospital_id as {{ dbt.type_string() }}) as hospital_id,
    case
        when upper(source.ghm_code) like '90%' then 'error_ghm'
        when not source.pmsi_return_codes_ok then 'control_codes'
        else 'geographic_finess'
    end as pmsi_filter
from source
left join geographic on geographic.finess = source.hospital_id
where upper(source.ghm_code) like '90%'
    or not source.pmsi_return_codes_ok
    or geographic.finess is not null
