"""Per-group fairness metrics: equal to scikit-learn on the same slices, small cells suppressed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import brier_score_loss, precision_score, recall_score

from pipelines.config.monitor import MonitorParams
from pipelines.monitoring import fairness as fair

LABEL = "readmitted_30d"


def known_groups(sizes: dict[str, int], seed: int = 3) -> pl.DataFrame:
    """Rows in departments of the given sizes, with group-dependent risk and flag rates."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (dept, n) in enumerate(sizes.items()):
        p = np.clip(rng.beta(2 + k, 8, n), 0.001, 0.999)
        y = (rng.random(n) < p).astype(np.int32)
        parts.append(pl.DataFrame({
            "department": [dept] * n,
            "sex": rng.integers(1, 3, n).astype(np.int32),
            "age": rng.integers(18, 100, n).astype(np.int32),
            LABEL: y,
            "probability": p,
            "high_risk": (p >= 0.2 + 0.03 * k).astype(np.int64),
        }))
    return pl.concat(parts)


def report(frame: pl.DataFrame, min_cell: int = 10, patient_id: str | None = None) -> dict[str, Any]:
    return fair.fairness_report(frame, ("department", "sex", "age_band"), (18, 45, 65, 80), min_cell, 0.8,
                                label=LABEL, patient_id=patient_id)


def rows_by_group(result: dict[str, Any], grouping: str) -> dict[str, dict[str, Any]]:
    return {r["group"]: r for r in result["groups"][grouping]["groups"]}


def test_per_group_metrics_equal_sklearn_on_the_same_slices():
    frame = known_groups({"75": 400, "93": 300, "94": 250, "77": 120})
    result = report(frame)
    for grouping, column in (("department", "department"), ("sex", "sex")):
        rows = rows_by_group(result, grouping)
        for value in frame[column].unique().to_list():
            part = frame.filter(pl.col(column) == value)
            y, flag, p = part[LABEL].to_numpy(), part["high_risk"].to_numpy(), part["probability"].to_numpy()
            key = str(value) if grouping == "department" else fair.SEX_LABELS[value]
            row = rows[key]
            assert row["n"] == part.height
            assert row["positives"] == int(y.sum())
            assert row["recall"] == pytest.approx(recall_score(y, flag), abs=1e-12)
            assert row["precision"] == pytest.approx(precision_score(y, flag), abs=1e-12)
            assert row["false_negative_rate"] == pytest.approx(1 - recall_score(y, flag), abs=1e-12)
            assert row["selection_rate"] == pytest.approx(flag.mean(), abs=1e-12)
            assert row["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    # Groups really differ: the metrics are not the overall figure repeated (Evidently GroupBy's bug).
    recalls = {r["recall"] for r in result["groups"]["department"]["groups"]}
    assert len(recalls) == 4
    overall_y, overall_flag = frame[LABEL].to_numpy(), frame["high_risk"].to_numpy()
    assert result["overall"]["recall"] == pytest.approx(recall_score(overall_y, overall_flag))


def test_age_bands_slices_match_sklearn():
    frame = known_groups({"75": 600, "93": 500})
    rows = rows_by_group(report(frame), "age_band")
    assert list(rows) == ["18-44", "45-64", "65-79", "80+"]
    bands = {"18-44": (18, 45), "45-64": (45, 65), "65-79": (65, 80), "80+": (80, 200)}
    for band, (low, high) in bands.items():
        part = frame.filter((pl.col("age") >= low) & (pl.col("age") < high))
        y, flag = part[LABEL].to_numpy(), part["high_risk"].to_numpy()
        assert rows[band]["n"] == part.height
        assert rows[band]["recall"] == pytest.approx(recall_score(y, flag), abs=1e-12)


def test_age_band_labels_and_unknown():
    assert fair.age_band_labels((18, 45, 65, 80)) == ["<18", "18-44", "45-64", "65-79", "80+"]
    bands = fair.age_bands(np.array([17.0, 18.0, 44.0, 45.0, 79.0, 80.0, np.nan]), (18, 45, 65, 80))
    assert bands.tolist() == ["<18", "18-44", "18-44", "45-64", "65-79", "80+", "unknown"]


def test_group_with_nine_patients_is_suppressed_and_ten_is_not():
    frame = known_groups({"75": 300, "93": 250, "91": 9, "92": 10})
    result = report(frame)
    rows = rows_by_group(result, "department")
    assert rows["91"]["suppressed"] is True
    for field in (*fair.METRICS, *fair.COUNTS):
        assert rows["91"][field] is None, field
    assert rows["92"]["suppressed"] is False
    assert rows["92"]["n"] == 10
    assert rows["92"]["brier"] is not None
    assert result["groups"]["department"]["n_suppressed"] == 1


def test_suppressed_groups_are_left_out_of_the_ratios():
    frame = known_groups({"75": 300, "93": 250, "91": 9})
    # Make the small group the extreme one: every stay readmitted and flagged (recall 1).
    frame = frame.with_columns(
        pl.when(pl.col("department") == "91").then(1).otherwise(pl.col(LABEL)).alias(LABEL),
        pl.when(pl.col("department") == "91").then(1).otherwise(pl.col("high_risk")).alias("high_risk"),
    )
    parity = report(frame)["groups"]["department"]["parity"]
    rows = rows_by_group(report(frame), "department")
    expected = min(rows["75"]["recall"], rows["93"]["recall"]) / max(rows["75"]["recall"], rows["93"]["recall"])
    assert parity["recall"]["ratio"] == pytest.approx(expected)
    assert parity["recall"]["n_groups"] == 2
    assert "91" not in (parity["recall"]["min_group"], parity["recall"]["max_group"])


def test_patients_are_counted_when_the_frame_has_patient_ids():
    frame = known_groups({"75": 300, "93": 250, "91": 12})
    # 12 stays in 91 but only 9 distinct patients: suppressed.
    ids = [f"P{i}" for i in range(frame.height)]
    idx_91 = [i for i, d in enumerate(frame["department"].to_list()) if d == "91"]
    for i in idx_91[9:]:
        ids[i] = ids[idx_91[0]]
    frame = frame.with_columns(pl.Series("patient_id", ids))
    result = report(frame, patient_id="patient_id")
    rows = rows_by_group(result, "department")
    assert rows["91"]["suppressed"] is True
    assert rows["75"]["patients"] == 300
    assert result["patients_counted_from"] == "patient_id"
    assert report(frame)["patients_counted_from"].startswith("stays")


def test_parity_ratio_min_over_max_and_undefined_cases():
    rows = [
        {"group": "a", "suppressed": False, "recall": 0.5, "selection_rate": 0.2, "precision": None},
        {"group": "b", "suppressed": False, "recall": 0.8, "selection_rate": 0.0, "precision": 0.3},
        {"group": "c", "suppressed": True, "recall": None, "selection_rate": None, "precision": None},
    ]
    parity = fair.parity(rows)
    assert parity["recall"]["ratio"] == pytest.approx(0.625)
    assert (parity["recall"]["min_group"], parity["recall"]["max_group"]) == ("a", "b")
    assert parity["selection_rate"]["ratio"] == 0.0
    assert parity["precision"]["ratio"] is None  # one group with a defined precision
    assert parity["precision"]["n_groups"] == 1


def test_four_fifths_is_labelled_a_heuristic_and_flags_low_ratios():
    parities: dict[str, dict[str, dict[str, Any]]] = {
        "department": {"recall": {"ratio": 0.7}, "precision": {"ratio": 0.95}, "selection_rate": {"ratio": None}},
    }
    block = fair.four_fifths(parities, 0.8)
    assert "heuristic" in block["kind"]
    assert "not a legal test" in block["kind"]
    assert "not a legal test" in block["note"]
    assert block["checks"]["department"]["recall"]["passes"] is False
    assert block["checks"]["department"]["precision"]["passes"] is True
    assert block["checks"]["department"]["selection_rate"]["passes"] is None
    assert block["below_threshold"] == ["department.recall"]
    assert block["any_below_threshold"] is True


def test_group_without_positives_has_null_recall_not_zero():
    row = fair.group_metrics(np.zeros(20, int), np.array([1] * 5 + [0] * 15), np.full(20, 0.1), 20)
    assert row["recall"] is None
    assert row["false_negative_rate"] is None
    assert row["precision"] == 0.0
    assert math.isclose(row["brier"], 0.01)


def test_params_validation():
    assert MonitorParams().min_cell_patients == 10
    assert len(MonitorParams().drift_columns) == 18
    with pytest.raises(ValueError, match="age_band_edges"):
        MonitorParams(age_band_edges=(18, 65, 45))
    with pytest.raises(ValueError, match="columns"):
        MonitorParams(columns=("age", "not_a_feature"))
    with pytest.raises(ValueError, match="fairness_groups"):
        MonitorParams(fairness_groups=("postcode",))


def test_small_counts_inside_a_published_group_are_masked():
    row = {"n": 400, "patients": 380, "positives": 3, "flagged": 40, "true_positives": 2, "recall": 0.67,
           "precision": 0.05, "false_negative_rate": 0.33, "selection_rate": 0.1, "brier": 0.05,
           "prevalence": 0.0075, "suppressed": False}
    masked = fair.mask_small_counts(row, 10)
    assert masked["positives"] is None
    assert masked["true_positives"] is None
    assert masked["recall"] is None
    assert masked["precision"] is None
    assert masked["prevalence"] is None
    assert masked["flagged"] == 40
    assert masked["selection_rate"] == 0.1
    assert masked["n"] == 400
    assert masked["small_counts_masked"] is True
    big = {**row, "positives": 30, "true_positives": 20}
    kept = fair.mask_small_counts(big, 10)
    assert kept["recall"] == 0.67
    assert kept["small_counts_masked"] is False
    zero = fair.mask_small_counts({**big, "true_positives": 0}, 10)
    assert zero["true_positives"] == 0
    assert zero["recall"] == 0.67


def test_reliability_per_department_is_mean_predicted_vs_observed_in_quantile_bins():
    frame = known_groups({"75": 500, "93": 400, "95": 9})
    out = fair.fairness_report(frame, ("department",), (18, 45, 65, 80), 10, 0.8, label=LABEL,
                               reliability_groups=("department",), n_bins=4)
    rows = {r["group"]: r for r in out["groups"]["department"]["reliability"]}
    assert rows["95"] == {"group": "95", "suppressed": True, "bins": []}  # 9 patients: no curve at all
    dept = frame.filter(pl.col("department") == "93")
    p, y = dept["probability"].to_numpy(), dept[LABEL].to_numpy()
    order = np.argsort(p, kind="stable")
    bins = rows["93"]["bins"]
    assert [b["n"] for b in bins] == [100, 100, 100, 100]
    for b, part in zip(bins, np.array_split(order, 4), strict=True):
        assert b["mean_predicted"] == pytest.approx(p[part].mean())
        positives = int(y[part].sum())
        assert b["observed_rate"] == (None if 0 < positives < 10 else pytest.approx(positives / part.size))
    assert [b["mean_predicted"] for b in bins] == sorted(b["mean_predicted"] for b in bins)
    group = next(r for r in out["groups"]["department"]["groups"] if r["group"] == "93")
    assert group["mean_predicted"] == pytest.approx(p.mean())
    assert group["observed_to_expected"] == pytest.approx(y.sum() / p.sum())
    assert "reliability" not in report(frame)["groups"]["department"]  # only where asked


def test_reliability_bin_with_few_readmitted_hides_its_rate():
    y = np.array([1] * 3 + [0] * 97)
    p = np.linspace(0.01, 0.5, 100)
    bins = fair.reliability_bins(y, p, None, 2, 10)
    assert bins[0]["observed_rate"] is None  # 3 readmitted stays: a cell under 10
    assert bins[0]["suppressed"]
    assert bins[1] == {"n": 50, "mean_predicted": pytest.approx(p[50:].mean()), "observed_rate": 0.0,
                       "suppressed": False}
    with pytest.raises(ValueError, match="reliability_groups"):
        MonitorParams(fairness_groups=("sex",), reliability_groups=("department",))


def test_parity_interval_covers_the_ratio_and_narrows_with_size():
    small = known_groups({"75": 300, "93": 300, "94": 300}, seed=5)
    large = known_groups({"75": 3000, "93": 3000, "94": 3000}, seed=5)
    widths = []
    for frame in (small, large):
        out = fair.fairness_report(frame, ("department",), (18, 45, 65, 80), 10, 0.8, label=LABEL,
                                   replicates=400, seed=1)
        recall = out["groups"]["department"]["parity"]["recall"]
        low, high = recall["ci95"]
        assert low < recall["ratio"] < high <= 1.0
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ten times the stays: about a third of the width
    again = fair.fairness_report(small, ("department",), (18, 45, 65, 80), 10, 0.8, label=LABEL,
                                 replicates=400, seed=1)
    first = fair.fairness_report(small, ("department",), (18, 45, 65, 80), 10, 0.8, label=LABEL,
                                 replicates=400, seed=1)
    assert again == first  # seeded
    assert "ci95" not in report(small)["groups"]["department"]["parity"]["recall"]  # no replicates asked


def test_parity_interval_resamples_patients_not_stays():
    frame = known_groups({"75": 400, "93": 400}, seed=6)
    # every patient has 4 identical stays: the information is that of 100 patients per group
    patient = (np.arange(frame.height) // 4).astype(str)
    block = frame.with_row_index().with_columns((pl.col("index") // 4 * 4).alias("first"))
    cloned = frame[block["first"].to_list()].with_columns(pl.Series("patient_id", patient))
    by_stay = fair.parity_intervals(cloned["department"].to_numpy(), ["75", "93"], cloned[LABEL].to_numpy(),
                                    cloned["high_risk"].to_numpy(), None, 400, 2, ("recall",))["recall"]
    by_patient = fair.parity_intervals(cloned["department"].to_numpy(), ["75", "93"], cloned[LABEL].to_numpy(),
                                       cloned["high_risk"].to_numpy(), cloned["patient_id"].to_numpy(), 400, 2,
                                       ("recall",))["recall"]
    assert by_stay is not None
    assert by_patient is not None
    # clustered: wider (not twice: a min / max ratio is capped at 1)
    assert (by_patient[1] - by_patient[0]) > 1.3 * (by_stay[1] - by_stay[0])
    assert fair.parity_intervals(np.array(["75"]), ["75"], np.array([1]), np.array([1]), None, 10, 0) == \
        {"recall": None, "selection_rate": None, "precision": None}


def test_large_groups_draw_their_bootstrap_totals_from_the_normal_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """At region scale a group has ~10^5 patients: the normal limit gives the resampling's interval
    (within Monte-Carlo error) at a cost that does not grow with the group."""
    frame = known_groups({"75": 6000, "93": 6000}, seed=8)
    args = (frame["department"].to_numpy(), ["75", "93"], frame[LABEL].to_numpy(), frame["high_risk"].to_numpy(),
            None, 2000, 3)
    normal = fair.parity_intervals(*args)
    monkeypatch.setattr(fair, "NORMAL_MIN_CLUSTERS", 10**9)
    exact = fair.parity_intervals(*args)
    for metric in ("recall", "precision", "selection_rate"):
        low_n, high_n = normal[metric] or [0.0, 0.0]
        low_e, high_e = exact[metric] or [1.0, 1.0]
        assert abs(low_n - low_e) < 0.015, metric
        assert abs(high_n - high_e) < 0.015, metric
        assert high_n - low_n > 0.01, metric  # a real interval, not a point
