{#-
    Readmission KPIs per residence department and month of discharge of the index stays:
    index stays, distinct patients, readmissions, rate with its 95% Wilson interval, total cost
    of the index episodes. Cells with fewer than `min_cell_patients` patients are suppressed
    (SNDS small-cell rule): every figure is null and `suppressed` is true.
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
        sum(episode_cost) as total_cost

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
        patients < {{ var('min_cell_patients') }} as suppressed

    from cells

)

select
    measured.department,
    departments.department_label,
    measured.discharge_month,
    measured.suppressed,
    case when not measured.suppressed then measured.index_stays end as index_stays,
    case when not measured.suppressed then measured.patients end as patients,
    case when not measured.suppressed then measured.readmissions end as readmissions,
    case when not measured.suppressed then measured.readmission_rate end as readmission_rate,
    case when not measured.suppressed then measured.readmission_rate_ci_low end as readmission_rate_ci_low,
    case when not measured.suppressed then measured.readmission_rate_ci_high end as readmission_rate_ci_high,
    case when not measured.suppressed then measured.total_cost end as total_cost

from measured
left join departments
    on measured.department = departments.department
