"""Patient-clustered intervals and indirectly standardised ratios (pipelines/standardised.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipelines.standardised import (
    IndexStays,
    case_mix_probabilities,
    clustered_figures,
    design_matrix,
    fit_logistic,
)
from pipelines.stats import ratio_to_total, wilson_interval

SEED = 20240601


def make_stays(rows: list[tuple[str, str, int, str]], age: int = 70, sex: int = 1, charlson: int = 1) -> IndexStays:
    """(patient, department, readmitted, diagnosis group) rows; the other case-mix columns constant."""
    return IndexStays(
        patient_id=[r[0] for r in rows], department=[r[1] for r in rows], readmitted=[r[2] for r in rows],
        age=[age] * len(rows), sex=[sex] * len(rows), diagnosis_group=[r[3] for r in rows],
        charlson=[charlson] * len(rows),
    )


def clustered_rows(dept: str, patients: int, stays_each: int, readmitted_patients: int, prefix: str = "P",
                   group: str = "COPD") -> list[tuple[str, str, int, str]]:
    """Perfectly clustered: every stay of a patient has the patient's outcome."""
    return [(f"{prefix}{dept}-{p}", dept, int(p < readmitted_patients), group)
            for p in range(patients) for _ in range(stays_each)]


def width(ci: tuple[float, float] | None) -> float:
    assert ci is not None
    return ci[1] - ci[0]


def test_clustered_interval_is_wider_than_the_stay_level_one() -> None:
    # 2 departments x 100 patients x 5 stays each, a patient's stays all readmitted or none:
    # 500 stays but only 100 independent units per department.
    rows = clustered_rows("93", 100, 5, 25) + clustered_rows("75", 100, 5, 15)
    fig = clustered_figures(make_stays(rows), 1000, SEED, 10)
    d93 = fig.departments["93"]
    assert d93.rate == pytest.approx(0.25)
    naive = wilson_interval(125, 500)
    assert d93.rate_ci is not None
    assert d93.rate_ci[0] < 0.25 < d93.rate_ci[1]
    # the effective sample is 100 patients, not 500 stays: about sqrt(5) ~ 2.2 times wider
    assert width(d93.rate_ci) > 1.8 * width(naive)
    assert width(d93.rate_ci) == pytest.approx(width(wilson_interval(25, 100)), rel=0.2)
    ratio, lo, hi = ratio_to_total(125, 500, 200, 1000)
    assert d93.ratio == pytest.approx(ratio)
    assert width(d93.ratio_ci) > 1.8 * (hi - lo)
    assert width(fig.rate_ci) > 1.8 * width(wilson_interval(200, 1000))


def test_independent_stays_give_about_the_stay_level_interval() -> None:
    rows = clustered_rows("93", 500, 1, 125) + clustered_rows("75", 500, 1, 75)
    fig = clustered_figures(make_stays(rows), 1000, SEED, 10)
    assert width(fig.departments["93"].rate_ci) == pytest.approx(width(wilson_interval(125, 500)), rel=0.15)


def test_standardised_ratio_is_1_when_case_mix_explains_the_rate() -> None:
    # Same within-group rates in both departments (COPD 40%, OTHER 10%), different mixes:
    # 93 treats mostly COPD, so its crude rate is higher, but its case mix explains all of it.
    rows: list[tuple[str, str, int, str]] = []
    for dept, copd, other in (("93", 400, 100), ("75", 100, 400)):
        for group, n, rate in (("COPD", copd, 0.4), ("OTHER", other, 0.1)):
            rows += [(f"{dept}-{group}-{i}", dept, int(i < round(n * rate)), group) for i in range(n)]
    fig = clustered_figures(make_stays(rows), 500, SEED, 10)
    d93, d75 = fig.departments["93"], fig.departments["75"]
    assert d93.ratio == pytest.approx(1.36)  # crude: 0.34 / 0.25
    assert d75.ratio == pytest.approx(0.64)
    assert d93.standardised_ratio == pytest.approx(1.0, abs=1e-4)
    assert d75.standardised_ratio == pytest.approx(1.0, abs=1e-4)
    assert d93.expected == pytest.approx(d93.readmissions, rel=1e-4)
    assert d93.standardised_ratio_ci is not None
    assert d93.standardised_ratio_ci[0] < 1 < d93.standardised_ratio_ci[1]


def test_standardised_ratio_shows_an_excess_the_case_mix_does_not_explain() -> None:
    rows: list[tuple[str, str, int, str]] = []
    for dept, rate in (("93", 0.3), ("75", 0.15), ("94", 0.15)):
        for group in ("COPD", "OTHER"):
            rows += [(f"{dept}-{group}-{i}", dept, int(i < round(300 * rate)), group) for i in range(300)]
    fig = clustered_figures(make_stays(rows), 500, SEED, 10)
    d93 = fig.departments["93"]
    # region 360 / 1800 = 20% in both groups: 93 expects 600 x 20% = 120 and observes 180
    assert d93.expected == pytest.approx(120, rel=1e-4)
    assert d93.standardised_ratio == pytest.approx(1.5, rel=1e-4)
    assert d93.standardised_ratio_ci is not None
    assert d93.standardised_ratio_ci[0] > 1


def test_region_expected_equals_observed() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    stays = IndexStays(
        patient_id=[f"P{i // 2}" for i in range(n)], department=[str(75 + i % 3) for i in range(n)],
        readmitted=rng.binomial(1, 0.15, n).tolist(), age=rng.integers(18, 100, n).tolist(),
        sex=rng.integers(1, 3, n).tolist(), diagnosis_group=rng.choice(["COPD", "CKD", "OTHER"], n).tolist(),
        charlson=rng.integers(0, 8, n).tolist(),
    )
    p = case_mix_probabilities(stays)
    assert p.sum() == pytest.approx(sum(stays.readmitted), rel=1e-9)
    assert np.all((p > 0) & (p < 1))


def test_logistic_fit_recovers_a_saturated_model() -> None:
    groups = np.array(["a"] * 100 + ["b"] * 100)
    y = np.array([1] * 20 + [0] * 80 + [1] * 50 + [0] * 50, dtype=float)
    p = fit_logistic(design_matrix([groups]), y)
    assert p[0] == pytest.approx(0.2, abs=1e-5)
    assert p[-1] == pytest.approx(0.5, abs=1e-5)
    # a level without any event stays finite (tiny ridge)
    p0 = fit_logistic(design_matrix([groups]), np.array([0.0] * 100 + [1.0] * 20 + [0.0] * 80))
    assert np.all(np.isfinite(p0))
    assert p0[0] < 1e-3


def test_departments_under_10_patients_are_suppressed() -> None:
    rows = (clustered_rows("93", 9, 6, 4) + clustered_rows("94", 10, 1, 0) + clustered_rows("95", 10, 2, 3)
            + clustered_rows("75", 200, 2, 40))
    fig = clustered_figures(make_stays(rows), 200, SEED, 10)
    small = fig.departments["93"]
    assert small.suppressed
    assert small.patients == 9
    assert small.index_stays == 54
    assert small.rate is None
    assert small.rate_ci is None
    assert small.standardised_ratio is None
    assert small.expected is None
    zero = fig.departments["94"]  # 10 patients, no readmission: published (zero is not a small cell)
    assert not zero.suppressed
    assert not zero.masked
    assert zero.rate == 0.0
    masked = fig.departments["95"]  # 10 patients, 3 readmitted patients: readmission figures masked
    assert not masked.suppressed
    assert masked.masked
    assert masked.rate is None
    assert masked.standardised_ratio is None
    assert masked.ratio_ci is None


def test_same_seed_same_figures_other_seed_other_draws() -> None:
    rows = clustered_rows("93", 60, 3, 20) + clustered_rows("75", 80, 2, 10) + [("P93-0", "75", 1, "COPD")]
    stays = make_stays(rows)

    def text(seed: int) -> str:
        fig = clustered_figures(stays, 300, seed, 10)
        return json.dumps({k: [d.rate_ci, d.ratio_ci, d.standardised_ratio_ci] for k, d in fig.departments.items()})

    assert text(SEED) == text(SEED)
    assert text(SEED) != text(SEED + 1)


def test_a_patient_in_two_departments_is_one_cluster() -> None:
    rows = clustered_rows("93", 30, 1, 10) + [(f"P93-{p}", "75", int(p < 10), "COPD") for p in range(30)]
    fig = clustered_figures(make_stays(rows), 300, SEED, 10)
    assert fig.patients == 30
    assert fig.index_stays == 60
    assert fig.departments["75"].patients == 30
    # the same patients, perfectly correlated in both departments: 93 / 75 is exactly 1 in every replicate
    d93 = fig.departments["93"]
    assert d93.ratio_vs_rest_ci is not None
    assert d93.ratio_vs_rest_ci[0] == pytest.approx(1.0)
    assert d93.ratio_vs_rest_ci[1] == pytest.approx(1.0)
    assert not math.isnan(fig.rate_ci[0])
