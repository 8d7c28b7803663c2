"""The dashboard's numbers: marts -> published figures, small cells suppressed.

A cell (department, department x month, diagnosis, hospital, fairness group, cost group) is
published only when it counts at least `min_cell` distinct patients; otherwise every figure of
the cell is None and it is shown as suppressed. In a published cell, 1 to `min_cell` - 1
readmitted patients are a small cell too (the marts' `readmissions_masked` rule): the
readmission count, rate, interval and ratio are None and shown as masked (zero is published).
Department rates, ratios and standardised ratios, their patient-clustered 95% CIs (patient
bootstrap) and the region's interval come from pipelines/standardised.py, as in warehouse.json;
the stay-level Wilson / delta-method intervals (index stays treated as independent, too narrow)
are kept beside them, labelled. Month cells keep the marts' stay-level Wilson interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from pipelines import marts as q
from pipelines.standardised import ClusteredFigures, clustered_figures
from pipelines.stats import pearson, ratio_to_total, safe_div
from pipelines.stats import wilson_interval as wilson

# Short French names of the project's analytic diagnosis groups (the seed labels are per
# ICD-10 category; a group spans several categories).
GROUP_LABELS_FR: dict[str, str] = {
    "COPD": "BPCO",
    "HEART_FAILURE": "Insuffisance cardiaque",
    "DIABETES": "Diabète",
    "CKD": "Maladie rénale chronique",
    "CANCER": "Cancers",
    "STROKE": "AVC",
    "PNEUMONIA": "Pneumopathies",
    "HIP_FRACTURE": "Fracture du fémur",
    "OBSTETRICS": "Obstétrique",
    "PLANNED_SESSION": "Séances programmées",
    "OTHER": "Autres diagnostics",
}


def group_label(group: str) -> str:
    return GROUP_LABELS_FR.get(group, group.replace("_", " ").capitalize())


def published(patients: int | None, min_cell: int) -> bool:
    return patients is not None and patients >= min_cell


def masked(readmitted_patients: int | None, min_cell: int) -> bool:
    """1 to min_cell - 1 readmitted patients: a small cell (zero is not)."""
    return readmitted_patients is not None and 0 < readmitted_patients < min_cell


@dataclass(frozen=True)
class Kpis:
    stays: int
    patients: int
    index_stays: int
    readmissions: int | None  # None: masked (1-9 readmitted patients in the whole region)
    rate: float | None
    ci: tuple[float, float] | None  # patient-clustered (bootstrap)
    total_cost: float
    index_cost: float
    first_admission: date | None
    last_discharge: date | None
    first_index_discharge: date | None
    last_index_discharge: date | None


@dataclass(frozen=True)
class DeptStat:
    code: str
    name: str  # display name (IGN boundaries), else the seed label
    seed_label: str
    poverty_rate: float | None
    suppressed: bool
    index_stays: int | None
    patients: int | None
    readmissions: int | None
    cost: float | None
    rate: float | None
    ci: tuple[float, float] | None  # patient-clustered (bootstrap)
    ratio: float | None  # rate / regional rate (crude)
    ratio_ci: tuple[float, float] | None  # patient-clustered (bootstrap)
    masked: bool = False  # published stays, but 1-9 readmitted patients: no readmission figure
    ci_stay_level: tuple[float, float] | None = None  # Wilson, index stays as independent (too narrow)
    ratio_ci_stay_level: tuple[float, float] | None = None  # delta method, stays as independent
    expected: float | None = None  # expected readmissions under the region's case mix
    standardised_ratio: float | None = None  # observed / expected (indirect standardisation)
    standardised_ratio_ci: tuple[float, float] | None = None  # patient-clustered (bootstrap)

    @property
    def verdict(self) -> str:
        """'above' / 'below' when the ratio's 95% CI excludes 1, else 'similar' ('suppressed', 'masked')."""
        if self.suppressed:
            return "suppressed"
        if self.masked or self.ratio_ci is None:
            return "masked"
        if any(math.isnan(v) for v in self.ratio_ci):
            return "similar"
        if self.ratio_ci[0] > 1:
            return "above"
        if self.ratio_ci[1] < 1:
            return "below"
        return "similar"


@dataclass(frozen=True)
class HospitalStat:
    hospital_id: str
    name: str
    department: str
    category: str
    beds: int | None
    suppressed: bool
    stays: int | None
    patients: int | None


@dataclass(frozen=True)
class DiagStat:
    category: str
    label: str  # French label from the seed, or a plain fallback naming the group
    has_seed_label: bool
    group: str
    index_stays: int
    patients: int
    readmissions: int | None  # None: masked (1-9 readmitted patients)
    rate: float | None
    cost: float
    cost_share: float  # of all index-episode cost


@dataclass(frozen=True)
class CostGroup:
    group: str
    suppressed: bool
    index_stays: int | None
    patients: int | None
    cost: float | None
    share: float | None


@dataclass(frozen=True)
class MonthStat:
    month: date
    department: str | None
    suppressed: bool
    index_stays: int | None
    patients: int | None
    readmissions: int | None
    rate: float | None
    ci: tuple[float, float] | None
    masked: bool = False  # published stays, readmission figures masked (1-9 readmitted patients)
    complete: bool = True  # False: the month is only partly inside the span of measurable discharges


@dataclass(frozen=True)
class Trend:
    region: list[MonthStat]
    cells: list[MonthStat]  # department x month, as published by agg_department_kpis (+ our rule)
    months: list[date]
    recent_months: int
    partial_months: list[date]  # months with under half their days in the span of measurable discharges
    recent_rate: float | None  # last `recent_months` published, complete region months
    previous_rate: float | None  # the `recent_months` before
    recent_span: tuple[date, date] | None
    previous_span: tuple[date, date] | None


@dataclass(frozen=True)
class Diagnoses:
    by_cost: list[DiagStat]
    by_readmissions: list[DiagStat]
    published_categories: int
    suppressed_categories: int
    unlabelled_categories: list[str]  # published categories without a seed label
    cost_tile: q.CostTile
    cost_groups: list[CostGroup]


@dataclass(frozen=True)
class WarehouseNumbers:
    kpis: Kpis
    departments: list[DeptStat]
    poverty_correlation: float | None
    hospitals: list[HospitalStat]
    diagnoses: Diagnoses
    trend: Trend
    min_cell: int


def _kpis(o: q.Overview, min_cell: int, c: ClusteredFigures | None) -> Kpis:
    hidden = masked(o.readmitted_patients, min_cell) or not o.index_stays or c is None
    return Kpis(o.stays, o.patients, o.index_stays, None if hidden else o.readmissions,
                None if hidden else o.readmissions / o.index_stays,
                None if hidden or c is None else c.rate_ci,
                o.total_cost, o.index_cost, o.first_admission, o.last_discharge, o.first_index_discharge,
                o.last_index_discharge)


def _departments(rows: list[q.DepartmentRow], o: q.Overview, names: dict[str, str], min_cell: int,
                 c: ClusteredFigures | None) -> list[DeptStat]:
    out = []
    for r in rows:
        name = names.get(r.department, r.label.title())
        f = c.departments.get(r.department) if c is not None else None
        if not published(r.patients, min_cell) or f is None or f.suppressed:
            out.append(DeptStat(r.department, name, r.label, r.poverty_rate, True, None, None, None, None, None, None,
                                None, None))
            continue
        if masked(r.readmitted_patients, min_cell) or masked(o.readmitted_patients, min_cell) or f.masked:
            out.append(DeptStat(r.department, name, r.label, r.poverty_rate, False, r.index_stays, r.patients, None,
                                r.cost, None, None, None, None, masked=True))
            continue
        ratio, lo, hi = ratio_to_total(r.readmissions, r.index_stays, o.readmissions, o.index_stays)
        no_ratio = math.isnan(ratio) or f.ratio_ci is None
        out.append(DeptStat(
            r.department, name, r.label, r.poverty_rate, False, r.index_stays, r.patients, r.readmissions, r.cost,
            r.readmissions / r.index_stays, f.rate_ci,
            None if no_ratio else ratio, None if no_ratio else f.ratio_ci,
            ci_stay_level=wilson(r.readmissions, r.index_stays),
            ratio_ci_stay_level=None if math.isnan(ratio) else (lo, hi),
            expected=f.expected, standardised_ratio=f.standardised_ratio,
            standardised_ratio_ci=f.standardised_ratio_ci,
        ))
    return out


def _month(m: q.MonthRow, min_cell: int) -> MonthStat:
    if m.suppressed or not published(m.patients, min_cell) or not m.index_stays:
        return MonthStat(m.month, m.department, True, None, None, None, None, None)
    # The mart's flag; with a stricter threshold here, a count under it (>= the patients it counts).
    hidden = (m.readmissions_masked or m.readmissions is None or masked(m.readmitted_patients, min_cell)
              or masked(m.readmissions, min_cell))
    if hidden:
        return MonthStat(m.month, m.department, False, m.index_stays, m.patients, None, None, None, masked=True)
    assert m.readmissions is not None
    return MonthStat(m.month, m.department, False, m.index_stays, m.patients, m.readmissions,
                     m.readmissions / m.index_stays, wilson(m.readmissions, m.index_stays))


def _pooled(months: list[MonthStat]) -> float | None:
    n = sum(m.index_stays or 0 for m in months)
    x = sum(m.readmissions or 0 for m in months)
    return x / n if n else None


def _month_end(month: date) -> date:
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def _trend(region_rows: list[q.MonthRow], cell_rows: list[q.MonthRow], min_cell: int, recent: int,
           span: tuple[date | None, date | None]) -> Trend:
    first, last = span

    def complete(month: date) -> bool:
        """At least half of the month's days lie in the span of measurable index discharges."""
        end = _month_end(month)
        lo = max(month, first) if first else month
        hi = min(end, last) if last else end
        return (hi.toordinal() - lo.toordinal() + 1) * 2 >= end.day

    region = [replace(_month(m, min_cell), complete=complete(m.month)) for m in region_rows]
    cells = [replace(_month(m, min_cell), complete=complete(m.month)) for m in cell_rows]
    months = sorted({m.month for m in region} | {m.month for m in cells})
    partial = [m for m in months if not complete(m)]
    shown = [m for m in region if not m.suppressed and not m.masked and m.complete]
    recent_block, previous_block = shown[-recent:], shown[-2 * recent:-recent]
    enough = len(shown) >= 2 * recent
    return Trend(
        region, cells, months, recent, partial,
        _pooled(recent_block) if enough else None,
        _pooled(previous_block) if enough else None,
        (recent_block[0].month, recent_block[-1].month) if enough else None,
        (previous_block[0].month, previous_block[-1].month) if enough else None,
    )


def _diagnoses(rows: list[q.DiagnosisRow], tile: q.CostTile, total_cost: float, min_cell: int,
               top_n: int) -> Diagnoses:
    shown = [r for r in rows if published(r.patients, min_cell)]
    stats = [
        DiagStat(r.category, r.label or f"{group_label(r.group)} (libellé hors référentiel)",
                 r.label is not None, r.group, r.index_stays, r.patients,
                 None if masked(r.readmitted_patients, min_cell) else r.readmissions,
                 None if masked(r.readmitted_patients, min_cell) else r.readmissions / r.index_stays,
                 r.cost, safe_div(r.cost, total_cost))
        for r in shown
    ]
    by_cost = sorted(stats, key=lambda d: (-d.cost, d.category))[:top_n]
    counted = [d for d in stats if d.readmissions is not None and d.readmissions > 0]
    by_readm = sorted(counted, key=lambda d: (-(d.readmissions or 0), -(d.rate or 0.0), d.category))[:top_n]
    groups = [
        CostGroup(g.group, False, g.index_stays, g.patients, g.cost, g.share) if published(g.patients, min_cell)
        else CostGroup(g.group, True, None, None, None, None)
        for g in tile.rows
    ]
    unlabelled = sorted({d.category for d in by_cost + by_readm if not d.has_seed_label})
    return Diagnoses(by_cost, by_readm, len(shown), len(rows) - len(shown), unlabelled, tile, groups)


def warehouse_numbers(con: Any, names: dict[str, str], min_cell: int, top_n: int, cost_ntiles: int,
                      recent_months: int, replicates: int, seed: int) -> WarehouseNumbers:
    """The page's numbers; `replicates` / `seed`: the patient bootstrap (as in warehouse.json)."""
    o = q.overview(con)
    stays = q.index_case_mix(con)
    clustered = clustered_figures(stays, replicates, seed, min_cell) if len(stays) else None
    depts = _departments(q.departments(con), o, names, min_cell, clustered)
    pairs = [(d.poverty_rate, d.rate) for d in depts if d.rate is not None and d.poverty_rate is not None]
    corr = pearson([p for p, _ in pairs], [r for _, r in pairs]) if pairs else math.nan
    hospitals = [
        HospitalStat(h.hospital_id, h.name, h.department, h.category, h.beds, not published(h.patients, min_cell),
                     h.stays if published(h.patients, min_cell) else None,
                     h.patients if published(h.patients, min_cell) else None)
        for h in q.hospitals(con)
    ]
    return WarehouseNumbers(
        kpis=_kpis(o, min_cell, clustered),
        departments=depts,
        poverty_correlation=None if math.isnan(corr) else corr,
        hospitals=hospitals,
        diagnoses=_diagnoses(q.diagnoses(con), q.cost_tile(con, cost_ntiles), o.index_cost, min_cell, top_n),
        trend=_trend(q.monthly_region(con), q.monthly_departments(con), min_cell, recent_months,
                     (o.first_index_discharge, o.last_index_discharge)),
        min_cell=min_cell,
    )
