"""Department readmission figures with patient-clustered intervals and indirect standardisation.

Shared by the warehouse figures (warehouse.json) and the dashboard, computed from the same index
stays of the marts (`marts.index_case_mix`), so both publish the same numbers.

**Why clustered.** Most index stays belong to patients with two or more of them, and a patient's
stays share a risk: intervals that treat stays as independent (Wilson on the rate, delta method on
the log ratio) are too narrow. Every interval here comes from one seeded **patient bootstrap**:
each replicate draws the region's patients with replacement (all of a patient's index stays go
together, in whichever department they were) and recomputes every figure; the 95% CI is the 2.5-97.5
percentile of the replicates. Same stays, same seed, same replicates -> same bytes.

**Indirect standardisation.** A case-mix model, a main-effects logistic regression of the 30-day
label on age band, sex, diagnosis group and Charlson band fitted on every index stay of the region
(no department term), gives each stay its expected probability. A department's expected
readmissions are the sum over its index stays; its standardised ratio (SMR) is observed / expected:
1 when its case mix explains its rate, above 1 when it readmits more than its patients' profile
predicts. With an unpenalised intercept the region's expected equals its observed (SMR 1).

The model is fitted once and **held fixed** across the bootstrap replicates: it is estimated on
the whole region (tens of thousands of stays, about twenty coefficients), so its sampling error is
small next to a department's observed count, and indirect standardisation conventionally treats the
reference rates as known. Refitting per replicate would add that small part (slightly wider CIs)
at ~B times the cost of the fit. The case-mix model cannot be written as plain SQL (it is an
iterative fit), so these figures live here rather than in a dbt mart.

Cells with fewer than `min_cell` distinct patients are suppressed (no figure at all); 1 to
`min_cell` - 1 readmitted patients mask the readmission figures (the marts' rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

AGE_BANDS: tuple[int, ...] = (45, 65, 75, 85)  # lower bounds of the bands after the first: 18-44, 45-64, ...
CHARLSON_BANDS: tuple[int, ...] = (1, 2, 3, 5)  # 0, 1, 2, 3-4, 5+
CASE_MIX_TERMS: tuple[str, ...] = ("age_band", "sex", "diagnosis_group", "charlson_band")
CI_LEVEL = 0.95
MAX_ITER = 50
TOLERANCE = 1e-10
RIDGE = 1e-6  # on the non-intercept coefficients only: a level without any readmission stays finite


@dataclass(frozen=True)
class IndexStays:
    """One row per index stay, in a fixed order (the caller sorts by stay_id)."""

    patient_id: Sequence[str]
    department: Sequence[str]
    readmitted: Sequence[int]
    age: Sequence[int]
    sex: Sequence[int]
    diagnosis_group: Sequence[str]
    charlson: Sequence[int]

    def __len__(self) -> int:
        return len(self.readmitted)


@dataclass(frozen=True)
class DepartmentFigures:
    department: str
    index_stays: int
    patients: int
    readmissions: int
    readmitted_patients: int
    suppressed: bool  # fewer than min_cell patients: every figure below is None
    masked: bool  # 1 to min_cell - 1 readmitted patients: readmission figures None
    rate: float | None = None
    rate_ci: tuple[float, float] | None = None  # patient-clustered
    ratio: float | None = None  # rate / regional rate (crude)
    ratio_ci: tuple[float, float] | None = None  # patient-clustered
    ratio_vs_rest: float | None = None  # rate / rate of the rest of the region
    ratio_vs_rest_ci: tuple[float, float] | None = None
    expected: float | None = None  # sum of the case-mix model's probabilities
    standardised_ratio: float | None = None  # observed / expected
    standardised_ratio_ci: tuple[float, float] | None = None  # patient-clustered, model held fixed


@dataclass(frozen=True)
class ClusteredFigures:
    index_stays: int
    patients: int
    readmissions: int
    rate: float
    rate_ci: tuple[float, float]  # patient-clustered
    replicates: int
    seed: int
    departments: dict[str, DepartmentFigures] = field(default_factory=dict)
    case_mix_terms: tuple[str, ...] = CASE_MIX_TERMS


def bands(values: np.ndarray, lower_bounds: Sequence[int]) -> np.ndarray:
    """Band index 0..len(lower_bounds) of each value (band k starts at lower_bounds[k-1])."""
    return np.searchsorted(np.asarray(lower_bounds), values, side="right")


def design_matrix(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Intercept + one indicator per non-reference level of each categorical column (the first
    level in sorted order is the reference)."""
    parts = [np.ones((len(columns[0]) if columns else 0, 1))]
    for col in columns:
        levels = np.unique(col)
        codes = np.searchsorted(levels, col)
        parts.append((codes[:, None] == np.arange(1, levels.size)[None, :]).astype(np.float64))
    return np.hstack(parts)


def fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Predicted probabilities of a logistic regression fitted by Newton-Raphson (IRLS).

    Column 0 is the intercept and is not penalised, so the fitted probabilities sum to the number
    of events; the other coefficients carry a tiny ridge (RIDGE) that only matters for a level
    without any event (its coefficient would otherwise diverge)."""
    n, k = x.shape
    beta = np.zeros(k)
    mean = float(np.mean(y)) if n else 0.0
    if 0 < mean < 1:
        beta[0] = math.log(mean / (1 - mean))
    penalty = np.full(k, RIDGE * max(n, 1))
    penalty[0] = 0.0
    for _ in range(MAX_ITER):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (y - p) - penalty * beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if float(np.max(np.abs(step))) < TOLERANCE:
            break
    return 1.0 / (1.0 + np.exp(-(x @ beta)))


def case_mix_probabilities(stays: IndexStays) -> np.ndarray:
    """Each index stay's expected 30-day readmission probability under the region's case mix."""
    columns = [
        bands(np.asarray(stays.age), AGE_BANDS),
        np.asarray(stays.sex).astype(np.int64),
        np.asarray(stays.diagnosis_group).astype(str),
        bands(np.asarray(stays.charlson), CHARLSON_BANDS),
    ]
    return fit_logistic(design_matrix(columns), np.asarray(stays.readmitted, dtype=np.float64))


def _interval(values: np.ndarray) -> tuple[float, float] | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(finite, [tail, 1 - tail])
    return (float(lo), float(hi))


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def clustered_figures(stays: IndexStays, replicates: int, seed: int, min_cell: int,
                      expected: np.ndarray | None = None) -> ClusteredFigures:
    """Region and department figures with patient-bootstrap 95% CIs (see the module docstring).

    `expected` (per stay) defaults to the case-mix model's probabilities."""
    n_rows = len(stays)
    if n_rows == 0:
        raise ValueError("clustered_figures: no index stay")
    y = np.asarray(stays.readmitted, dtype=np.int64)
    e = case_mix_probabilities(stays) if expected is None else np.asarray(expected, dtype=np.float64)
    patients, patient_idx = np.unique(np.asarray(stays.patient_id).astype(str), return_inverse=True)
    depts, dept_idx = np.unique(np.asarray(stays.department).astype(str), return_inverse=True)
    n_pat, n_dept = patients.size, depts.size
    # (patient, department) cells: the unit the bootstrap weights
    cell_key = patient_idx.astype(np.int64) * n_dept + dept_idx
    cells, cell_idx = np.unique(cell_key, return_inverse=True)
    cell_patient, cell_dept = cells // n_dept, cells % n_dept
    cell_n = np.bincount(cell_idx, minlength=cells.size).astype(np.float64)
    cell_x = np.bincount(cell_idx, weights=y, minlength=cells.size)
    cell_e = np.bincount(cell_idx, weights=e, minlength=cells.size)

    rng = np.random.default_rng(seed)
    reps_n = np.empty((replicates, n_dept))
    reps_x = np.empty((replicates, n_dept))
    reps_e = np.empty((replicates, n_dept))
    for b in range(replicates):
        draw = np.bincount(rng.integers(0, n_pat, n_pat), minlength=n_pat).astype(np.float64)
        w = draw[cell_patient]
        reps_n[b] = np.bincount(cell_dept, weights=w * cell_n, minlength=n_dept)
        reps_x[b] = np.bincount(cell_dept, weights=w * cell_x, minlength=n_dept)
        reps_e[b] = np.bincount(cell_dept, weights=w * cell_e, minlength=n_dept)
    region_rate_b = _div(reps_x.sum(axis=1), reps_n.sum(axis=1))

    total_n, total_x = n_rows, int(y.sum())
    region_rate = total_x / total_n
    region_ci = _interval(region_rate_b) or (math.nan, math.nan)
    out: dict[str, DepartmentFigures] = {}
    for j, code in enumerate(depts.tolist()):
        in_dept = dept_idx == j
        n_j, x_j = int(in_dept.sum()), int(y[in_dept].sum())
        pats_j = int(np.unique(patient_idx[in_dept]).size)
        xp_j = int(np.unique(patient_idx[in_dept & (y == 1)]).size)
        suppressed = pats_j < min_cell
        masked = not suppressed and 0 < xp_j < min_cell
        base = DepartmentFigures(code, n_j, pats_j, x_j, xp_j, suppressed, masked)
        if suppressed or masked:
            out[code] = base
            continue
        rate_b = _div(reps_x[:, j], reps_n[:, j])
        rest_b = _div(reps_x.sum(axis=1) - reps_x[:, j], reps_n.sum(axis=1) - reps_n[:, j])
        e_j = float(e[in_dept].sum())
        rate_j = x_j / n_j
        rest_n, rest_x = total_n - n_j, total_x - x_j
        out[code] = DepartmentFigures(
            code, n_j, pats_j, x_j, xp_j, False, False,
            rate=rate_j, rate_ci=_interval(rate_b),
            ratio=rate_j / region_rate if region_rate else None,
            ratio_ci=_interval(_div(rate_b, region_rate_b)),
            ratio_vs_rest=(rate_j / (rest_x / rest_n)) if rest_n and rest_x else None,
            ratio_vs_rest_ci=_interval(_div(rate_b, rest_b)) if rest_n and rest_x else None,
            expected=e_j,
            standardised_ratio=x_j / e_j if e_j > 0 else None,
            standardised_ratio_ci=_interval(_div(reps_x[:, j], reps_e[:, j])),
        )
    return ClusteredFigures(total_n, n_pat, total_x, region_rate, region_ci, replicates, seed, out)
