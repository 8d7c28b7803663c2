"""Read-only SQL on the warehouse marts (toolkit): the numbers of warehouse.json and the dashboard.

Every figure that both the warehouse stage's metrics and the dashboard publish is queried here
once, from `marts.*` and `ref.*` (the dbt seeds), never copied from a metrics file, so the page,
warehouse.json and the marts cannot disagree. Small cells are not dropped here: each
row carries its patient count and `data.published` / `data.masked` decide what may be published.

The 30-day readmission figures use the index stays of `fct_readmissions` (the definition lives
in dbt); months are months of discharge of the index episode, as in `agg_department_kpis`.
Readmitted patients are counted too: 1 to 9 of them are a small cell as well (the marts' rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pipelines import contracts
from pipelines.config import DuckDBSettings
from pipelines.duckdb_settings import connect_read_only
from pipelines.errors import MissingInputError
from pipelines.standardised import IndexStays

MARTS = "marts"
REF = "ref"
READMITTED_PATIENTS = "count(distinct case when readmitted_30d = 1 then patient_id end)"


@dataclass(frozen=True)
class Overview:
    stays: int
    patients: int
    total_cost: float
    index_stays: int
    index_patients: int
    readmissions: int
    readmitted_patients: int
    index_cost: float
    first_admission: date | None
    last_discharge: date | None
    first_index_discharge: date | None  # the span of discharges that the 30-day measure covers
    last_index_discharge: date | None


@dataclass(frozen=True)
class DepartmentRow:
    department: str
    label: str
    poverty_rate: float | None
    index_stays: int
    patients: int
    readmissions: int
    readmitted_patients: int
    cost: float


@dataclass(frozen=True)
class HospitalRow:
    hospital_id: str
    name: str
    department: str
    category: str
    beds: int | None
    stays: int
    patients: int


@dataclass(frozen=True)
class DiagnosisRow:
    category: str  # 3-character ICD-10 category of the index stay's main diagnosis
    label: str | None  # French label from the ref_diagnosis_groups seed (None when the seed has none)
    group: str
    index_stays: int
    patients: int
    readmissions: int
    readmitted_patients: int
    cost: float


@dataclass(frozen=True)
class CostTileRow:
    group: str
    index_stays: int
    patients: int
    cost: float | None  # null when the extract has no valuation (costs null)
    share: float | None


@dataclass(frozen=True)
class CostTile:
    """The costliest 1/ntiles of index stays (ntile over episode_cost) and its cost by group."""

    ntiles: int
    index_stays: int
    threshold_euros: float | None
    rows: list[CostTileRow]


@dataclass(frozen=True)
class MonthRow:
    month: date
    department: str | None  # None: the whole region
    index_stays: int | None
    patients: int | None
    readmissions: int | None
    readmitted_patients: int | None  # region rows only (the mart publishes a flag instead)
    suppressed: bool  # as published by the mart (agg_department_kpis); region rows: False
    readmissions_masked: bool  # the mart's flag: 1-9 readmitted patients, readmission figures null


def connect(warehouse: Path, settings: DuckDBSettings | None = None, root: Path | None = None) -> Any:
    """Read-only, one thread (same sums, same bytes), under the DuckDB memory limit of `settings`."""
    if not warehouse.is_file():
        raise MissingInputError(f"{warehouse}: warehouse not found (run the warehouse stage first)")
    return connect_read_only(warehouse, settings or DuckDBSettings(), root or Path.cwd(), threads=1)


def _rows(con: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in con.execute(sql, list(args)).fetchall()]


def overview(con: Any) -> Overview:
    stays, patients, total_cost, first, last = _rows(
        con,
        f"""select count(*), count(distinct patient_id), coalesce(sum(stay_cost::decimal(18, 2)), 0),
                   min(admission_date), max(discharge_date)
            from {MARTS}.fct_stays""",
    )[0]
    index_stays, index_patients, readmissions, readmitted, index_cost, first_index, last_index = _rows(
        con,
        f"""select count(*), count(distinct patient_id), coalesce(sum(readmitted_30d), 0),
                   {READMITTED_PATIENTS}, coalesce(sum(episode_cost::decimal(18, 2)), 0),
                   min(episode_discharge_date), max(episode_discharge_date)
            from {MARTS}.fct_readmissions where is_index""",
    )[0]
    return Overview(int(stays), int(patients), float(total_cost), int(index_stays), int(index_patients),
                    int(readmissions), int(readmitted), float(index_cost), first, last, first_index, last_index)


def departments(con: Any) -> list[DepartmentRow]:
    """Every department of the seed (zero rows when it has no index stay), by code."""
    rows = _rows(
        con,
        f"""with cells as (
                select department, count(*) as n, count(distinct patient_id) as patients,
                       sum(readmitted_30d) as x, {READMITTED_PATIENTS} as xp, sum(episode_cost::decimal(18, 2)) as cost
                from {MARTS}.fct_readmissions where is_index group by 1
            )
            select d.department, d.department_label, d.poverty_rate, coalesce(c.n, 0), coalesce(c.patients, 0),
                   coalesce(c.x, 0), coalesce(c.xp, 0), coalesce(c.cost, 0)
            from {REF}.ref_departments as d left join cells as c using (department)
            order by d.department""",
    )
    return [DepartmentRow(str(d), str(lab), None if pov is None else float(pov), int(n), int(p), int(x), int(xp),
                          float(c)) for d, lab, pov, n, p, x, xp, c in rows]


def index_case_mix(con: Any) -> IndexStays:
    """Every index stay with its patient, department, label and case-mix columns (age, sex,
    diagnosis group, Charlson score of the feature mart), ordered by stay_id: the input of the
    patient-clustered and standardised department figures (pipelines/standardised.py)."""
    rows = _rows(
        con,
        f"""select r.patient_id, r.department, r.readmitted_30d, f.age, f.sex, f.diagnosis_group, f.charlson_score
            from {MARTS}.fct_readmissions as r
            join {contracts.FEATURES_RELATION} as f using (stay_id)
            where r.is_index
            order by r.stay_id""",
    )
    columns: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(7)]
    patient, dept, label, age, sex, group, charlson = columns
    return IndexStays([str(v) for v in patient], [str(v) for v in dept], [int(v) for v in label],
                      [int(v) for v in age], [int(v) for v in sex], [str(v) for v in group],
                      [int(v) for v in charlson])


def hospitals(con: Any) -> list[HospitalRow]:
    rows = _rows(
        con,
        f"""with activity as (
                select hospital_id, count(*) as stays, count(distinct patient_id) as patients
                from {MARTS}.fct_stays group by 1
            )
            select h.hospital_id, h.hospital_name, h.department, h.hospital_category, h.beds,
                   coalesce(a.stays, 0), coalesce(a.patients, 0)
            from {MARTS}.dim_hospitals as h left join activity as a using (hospital_id)
            order by h.hospital_id""",
    )
    return [HospitalRow(str(i), str(n), str(d), str(c), None if b is None else int(b), int(s), int(p))
            for i, n, d, c, b, s, p in rows]


def _has_table(con: Any, schema: str, table: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchone()
    return bool(found and found[0])


def diagnoses(con: Any) -> list[DiagnosisRow]:
    """Index stays by 3-character ICD-10 category of the main diagnosis (with its French label).

    Labels come from the diagnosis-group seed, else from the seed of every CIM-10 category
    (ref_icd10_categories) when the warehouse has it.
    """
    every = _has_table(con, REF, "ref_icd10_categories")
    label = "coalesce(g.icd10_label_fr, c.icd10_label_fr)" if every else "g.icd10_label_fr"
    join = f"left join {REF}.ref_icd10_categories as c on c.icd10_category = left(s.icd10_code, 3)" if every else ""
    rows = _rows(
        con,
        f"""select left(s.icd10_code, 3) as category, any_value({label}) as label,
                   any_value(r.diagnosis_group) as grp,
                   count(*) as n, count(distinct r.patient_id) as patients,
                   coalesce(sum(r.readmitted_30d), 0) as x,
                   count(distinct r.patient_id) filter (where r.readmitted_30d = 1) as x_patients,
                   coalesce(sum(r.episode_cost::decimal(18, 2)), 0) as cost
            from {MARTS}.fct_readmissions as r
            join {MARTS}.fct_stays as s using (stay_id)
            left join {REF}.ref_diagnosis_groups as g on g.icd10_category = left(s.icd10_code, 3)
            {join}
            where r.is_index
            group by 1 order by 1""",
    )
    return [DiagnosisRow(str(c), None if lab is None else str(lab), str(g), int(n), int(p), int(x), int(xp),
                         float(cost)) for c, lab, g, n, p, x, xp, cost in rows]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def cost_tile(con: Any, ntiles: int) -> CostTile:
    """One global ranking of index stays: ntile over (episode_cost desc, stay_id); tile 1 is the costliest."""
    ranked = f"""select stay_id, patient_id, diagnosis_group, episode_cost,
                        ntile({int(ntiles)}) over (order by episode_cost desc, stay_id) as tile
                 from {MARTS}.fct_readmissions where is_index"""
    rows = _rows(
        con,
        f"""select diagnosis_group, count(*), count(distinct patient_id), sum(episode_cost::decimal(18, 2)),
                   sum(episode_cost::decimal(18, 2)) / sum(sum(episode_cost::decimal(18, 2))) over () as share
            from ({ranked}) as t where tile = 1 group by 1 order by 5 desc, 1""",
    )
    threshold = _rows(con, f"select min(episode_cost) from ({ranked}) as t where tile = 1")[0][0]
    tile_rows = [CostTileRow(str(g), int(n), int(p), _float(c), _float(s)) for g, n, p, c, s in rows]
    return CostTile(ntiles, sum(r.index_stays for r in tile_rows),
                    None if threshold is None else float(threshold), tile_rows)


def monthly_region(con: Any) -> list[MonthRow]:
    rows = _rows(
        con,
        f"""select date_trunc('month', episode_discharge_date)::date as month, count(*),
                   count(distinct patient_id), coalesce(sum(readmitted_30d), 0), {READMITTED_PATIENTS}
            from {MARTS}.fct_readmissions where is_index group by 1 order by 1""",
    )
    return [MonthRow(m, None, int(n), int(p), int(x), int(xp), False, False) for m, n, p, x, xp in rows]


def monthly_departments(con: Any) -> list[MonthRow]:
    """agg_department_kpis as published (suppressed cells have null figures; masked cells null
    readmission figures). A mart without the `readmissions_masked` column reads as never masked."""
    columns = {str(r[0]) for r in _rows(
        con, "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        MARTS, "agg_department_kpis")}
    masked = "readmissions_masked" if "readmissions_masked" in columns else "false"
    rows = _rows(
        con,
        f"""select discharge_month, department, index_stays, patients, readmissions, suppressed,
                   coalesce({masked}, false)
            from {MARTS}.agg_department_kpis order by discharge_month, department""",
    )

    def _int(v: Any) -> int | None:
        return None if v is None else int(v)

    return [MonthRow(m, str(d), _int(n), _int(p), _int(x), None, bool(s), bool(mk))
            for m, d, n, p, x, s, mk in rows]
