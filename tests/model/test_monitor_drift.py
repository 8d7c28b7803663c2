"""Evidently drift and quality reports: verdicts on planted / absent drift, numbers vs scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from pipelines import contracts
from pipelines.config.monitor import FEATURES, MonitorParams
from pipelines.monitor import to_pandas
from pipelines.monitoring import drift as ev
from tests.model.monitor_fixtures import DRIFTED, make_frame, plant_drift

LABEL = contracts.FEATURE_LABEL
NUMERICAL = set(contracts.NUMERIC_FEATURES)
UNTOUCHED = ("department", "deprivation_rate", "sex")


def run(reference, current, mp: MonitorParams | None = None) -> dict[str, Any]:
    mp = mp or MonitorParams()
    _, summary = ev.data_drift(to_pandas(reference, [*FEATURES, LABEL]), to_pandas(current, [*FEATURES, LABEL]),
                               mp.drift_columns, NUMERICAL, LABEL, mp)
    return summary


@pytest.fixture(scope="module")
def no_drift() -> dict[str, Any]:
    return run(make_frame(2500, seed=1), make_frame(2500, seed=2, prefix="C"))


@pytest.fixture(scope="module")
def planted() -> dict[str, Any]:
    return run(make_frame(2500, seed=1), plant_drift(make_frame(2500, seed=2, prefix="C"), seed=3))


def test_same_distribution_gives_no_dataset_drift(no_drift):
    dataset = no_drift["dataset"]
    assert dataset["drifted"] is False
    assert dataset["n_columns"] == len(FEATURES)
    assert dataset["n_drifted_columns"] == 0, dataset["drifted_columns"]
    assert no_drift["target"]["drifted"] is False


def test_planted_drift_flags_exactly_the_shifted_columns(planted):
    columns = planted["columns"]
    for name in DRIFTED:
        assert columns[name]["drifted"] is True, (name, columns[name])
    for name in UNTOUCHED:
        assert columns[name]["drifted"] is False, (name, columns[name])
    assert set(planted["dataset"]["drifted_columns"]) == set(DRIFTED)
    assert planted["dataset"]["drift_share"] == pytest.approx(len(DRIFTED) / len(FEATURES))
    assert planted["dataset"]["drifted"] is False  # 4 of 18 columns < the 0.5 share


def test_large_samples_use_distances_with_their_own_rule(planted):
    age = planted["columns"]["age"]
    assert age["method"].startswith("Wasserstein")
    assert age["statistic_kind"] == "distance"
    assert age["statistic"] >= age["threshold"]
    dept = planted["columns"]["department"]
    assert dept["type"] == "categorical"
    assert dept["statistic"] < dept["threshold"]


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # chi-square on a category absent from reference
def test_small_samples_use_p_values_and_still_flag_age():
    small = run(make_frame(600, seed=4), plant_drift(make_frame(600, seed=5, prefix="C"), seed=6))
    age = small["columns"]["age"]
    assert age["statistic_kind"] == "p_value"
    assert "p_value" in age["method"]
    assert age["drifted"] is True
    assert age["statistic"] < age["threshold"]
    assert small["columns"]["stay_cost"]["drifted"] is True


def test_dataset_drift_when_share_reaches_the_threshold():
    mp = MonitorParams(columns=("age", "stay_cost", "department", "sex"), drift_share=0.5)
    summary = run(make_frame(2000, seed=1), plant_drift(make_frame(2000, seed=2, prefix="C"), seed=3), mp)
    assert summary["dataset"]["n_drifted_columns"] == 2
    assert summary["dataset"]["drifted"] is True


def test_prediction_drift_on_shifted_scores():
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.beta(2, 8, 3000))
    _, same = ev.prediction_drift(ref, pd.Series(rng.beta(2, 8, 3000)), MonitorParams(), "validation")
    _, shifted = ev.prediction_drift(ref, pd.Series(rng.beta(4, 6, 3000)), MonitorParams(), "validation")
    assert same["drifted"] is False
    assert shifted["drifted"] is True
    assert shifted["current_mean"] > shifted["reference_mean"]


def quality_frame(seed: int = 0, n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 6, n)
    y = (rng.random(n) < p).astype(np.int64)
    return pd.DataFrame({LABEL: y, "probability": p, "high_risk": (p >= 0.3).astype(np.int64)})


def test_model_quality_uses_the_model_threshold_and_matches_sklearn():
    frame = quality_frame()
    section, quality = ev.model_quality(frame, LABEL, 0.3)
    assert section is not None
    assert quality["available"] is True
    y, flag, p = frame[LABEL].to_numpy(), frame["high_risk"].to_numpy(), frame["probability"].to_numpy()
    # Evidently's own figures (not only ours) equal scikit-learn's at the model's threshold, not at 0.5.
    assert quality["evidently"]["recall"] == pytest.approx(recall_score(y, flag), abs=1e-9)
    assert quality["evidently"]["precision"] == pytest.approx(precision_score(y, flag), abs=1e-9)
    assert quality["evidently"]["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert quality["evidently"]["recall"] != pytest.approx(recall_score(y, p >= 0.5))
    assert quality["max_abs_difference_vs_sklearn"] < 1e-6
    assert quality["positives"] == int(y.sum())
    assert quality["flagged"] == int(flag.sum())


def test_model_quality_skipped_when_one_class_only():
    frame = quality_frame().assign(**{LABEL: 0})
    section, quality = ev.model_quality(frame, LABEL, 0.3)
    assert section is None
    assert quality["available"] is False


def test_model_quality_refuses_flags_that_are_not_the_threshold():
    frame = quality_frame()
    frame.loc[0, "high_risk"] = 1 - int(frame["high_risk"].iloc[0])
    with pytest.raises(ev.MonitorError, match="high_risk"):
        ev.model_quality(frame, LABEL, 0.3)


def test_drift_page_has_the_same_bytes_for_the_same_data():
    """Evidently names widgets with fresh uuids; the page renumbers them (a DVC output must be stable)."""
    rng = np.random.default_rng(1)
    ref, cur = pd.Series(rng.beta(2, 8, 500)), pd.Series(rng.beta(3, 7, 500))
    pages = [ev.combined_html([ev.prediction_drift(ref, cur, MonitorParams(), "validation")[0]]) for _ in range(2)]
    assert pages[0] == pages[1]
    assert "root_metric_00000000000000000000000000000001" in pages[0]


def test_stable_ids_keeps_every_reference():
    page = ('{"id": "01a23bc7-b45e-7985-9e2e-b9ceb470a981", "links": ["57623447e5064258aea249148b49a72b"]} '
            'root_57623447e5064258aea249148b49a72b 01a23bc7-b45e-7985-9e2e-b9ceb470a981 deadbeef')
    assert ev.stable_ids(page) == (
        '{"id": "00000000-0000-0000-0000-000000000001", "links": ["00000000000000000000000000000002"]} '
        "root_00000000000000000000000000000002 00000000-0000-0000-0000-000000000001 deadbeef")
