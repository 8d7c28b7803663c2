{#
    Stays that enter the analyses. The standard PMSI MCO filters (SNDS documentation) drop:
    error GHMs (CMD 90), stays whose T_MCOaaC control codes are not all '0', and stays of the
    AP-HP / AP-HM / HCL geographic FINESS numbers (duplicates of the legal entity's stays).
    stg_pmsi_exclusions lists what was dropped and why.
#}
with

source as (

    select * from {{ source('clean', 'stays') }}

),

kept as (

    select source.*
    from source
    where not exists (select 1 from {{ ref('stg_pmsi_exclusions') }} as excluded
                      where excluded.stay_id = source.stay_id)

),

renamed as (

    select
        ----------  ids
        cast(stay_id as {{ dbt.type_string() }}) as stay_id,
        cast(hospital_id as {{ dbt.type_string() }}) as hospital_id,
        cast(pmsi_year as {{ dbt.type_int() }}) as pmsi_year,
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

    from kept

)

select * from renamed
