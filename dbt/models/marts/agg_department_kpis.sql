{#-
    Readmission KPIs per residence department and month of discharge of the index stays:
    index stays, distinct patients, readmissions, rate with its 95% Wilson interval, total cost
    of the index episodes. Cells with fewer than `min_cell_patients` patients are suppressed
    (SNDS small-cell rule): every figure is null and `suppressed` is true. In a published cell,
    readmissions of 1 to `min_cell_patients` - 1 patients are a small cell too: the readmission
    count, rate and interval are null and `readmissions_masked` is true (stays and cost remain).
-#}

with

readmissions as (

    select * from {{ ref('fct_readmissions') }}

),

departments as (

    select * from {{ ref('ref_departments') }}

),

cells as (

    select
        department,
        {{ month_start('episode_discharge_date') }} as discharge_month,
        count(*) as index_stays,
        count(distinct patient_id) as patients,
        sum(readmitted_30d) as readmissions,
        count(distinct case when readmitted_30d = 1 then patient_id end) as readmitted_patients,
        round(sum(episode_cost), 2) as total_cost

    from readmissions
    where is_index
    group by 1, 2

),

measured as (

    select
        cells.*,
        cast(readmissions as {{ type_double() }}) / index_stays as readmission_rate,
        {{ wilson_bound('readmissions', 'index_stays', 'low') }} as readmission_rate_ci_low,
        {{ wilson_bound('readmissions', 'index_stays', 'high') }} as readmission_rate_ci_high,
        patients < {{ var('min_cell_patients') }} as suppressed,
        readmitted_patients > 0 and readmitted_patients < {{ var('min_cell_patients') }} as readmissions_masked

    from cells

)

select
    measured.department,
    departments.department_label,
    measured.discharge_month,
    measured.suppressed,
    not measured.suppressed and measured.readmissions_masked as readmissions_masked,
    case when not measured.suppressed then measured.index_stays end as index_stays,
    case when not measured.suppressed then measured.patients end as patients,
    case when not (measured.suppressed or measured.readmissions_masked) then measured.readmissions end as readmissions,
    case when not (measured.suppressed or measured.readmissions_masked) then measured.readmission_rate end as readmission_rate,
    case when not (measured.suppressed or measured.readmissions_masked) then measured.readmission_rate_ci_low end as readmission_rate_ci_low,
    case when not (measured.suppressed or measured.readmissions_masked) then measured.readmission_rate_ci_high end as readmission_rate_ci_high,
    case when not measured.suppressed then measured.total_cost end as total_cost

from measured
left join departments
    on measured.department = departments.department
