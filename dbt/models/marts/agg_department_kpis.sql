{#-
    Readmission KPIs per residence department and month of discharge of the index stays:
    index stays, distinct patients, readmissions, rate with its patient-clustered 95% interval,
    total cost of the index episodes.

    The interval is a Wilson interval on the effective sample size n / deff, where the design
    effect deff = sum over patients of (x_i - p n_i)^2 / (n p (1 - p)) (x_i readmissions and n_i
    index stays of patient i in the cell; at least 1) is the cluster-robust variance of the rate
    over the binomial one: a patient's stays are not independent. With one stay per patient deff
    is 1 and the interval is the plain Wilson one, kept as `*_stay_level`. The department-level
    figures of warehouse.json and the dashboard use a patient bootstrap instead
    (pipelines/standardised.py). Cells with fewer than `min_cell_patients` patients are suppressed
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

patient_cells as (

    select
        department,
        {{ month_start('episode_discharge_date') }} as discharge_month,
        patient_id,
        count(*) as n_i,
        sum(readmitted_30d) as x_i

    from readmissions
    where is_index
    group by 1, 2, 3

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

spread as (

    select
        patient_cells.department,
        patient_cells.discharge_month,
        sum(
            (patient_cells.x_i - cast(cells.readmissions as {{ type_double() }}) / cells.index_stays * patient_cells.n_i)
            * (patient_cells.x_i - cast(cells.readmissions as {{ type_double() }}) / cells.index_stays * patient_cells.n_i)
        ) as sum_sq

    from patient_cells
    inner join cells
        on patient_cells.department = cells.department
        and patient_cells.discharge_month = cells.discharge_month
    group by 1, 2

),

clustered as (

    select
        cells.*,
        cast(cells.readmissions as {{ type_double() }}) / cells.index_stays as readmission_rate,
        case
            when cells.readmissions > 0 and cells.readmissions < cells.index_stays
                then cells.index_stays / greatest(1.0, spread.sum_sq / (
                    cells.index_stays
                    * (cast(cells.readmissions as {{ type_double() }}) / cells.index_stays)
                    * (1 - cast(cells.readmissions as {{ type_double() }}) / cells.index_stays)))
            else cast(cells.index_stays as {{ type_double() }})
        end as effective_stays

    from cells
    inner join spread
        on cells.department = spread.department
        and cells.discharge_month = spread.discharge_month

),

measured as (

    select
        clustered.*,
        {{ wilson_bound('readmission_rate * effective_stays', 'effective_stays', 'low') }} as readmission_rate_ci_low,
        {{ wilson_bound('readmission_rate * effective_stays', 'effective_stays', 'high') }} as readmission_rate_ci_high,
        {{ wilson_bound('readmissions', 'index_stays', 'low') }} as readmission_rate_ci_low_stay_level,
        {{ wilson_bound('readmissions', 'index_stays', 'high') }} as readmission_rate_ci_high_stay_level,
        patients < {{ var('min_cell_patients') }} as suppressed,
        readmitted_patients > 0 and readmitted_patients < {{ var('min_cell_patients') }} as readmissions_masked

    from clustered

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
    case when not (measured.suppressed or measured.readmissions_masked) then measured.index_stays / measured.effective_stays end as design_effect,
    case when not (measured.suppressed or measured.readmissions_masked) then measured.readmission_rate_ci_low_stay_level end as readmission_rate_ci_low_stay_level,
    case when not (measured.suppressed or measured.readmissions_masked) then measured.readmission_rate_ci_high_stay_level end as readmission_rate_ci_high_stay_level,
    case when not measured.suppressed then measured.total_cost end as total_cost

from measured
left join departments
    on measured.department = departments.department
