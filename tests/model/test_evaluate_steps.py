"""The evaluate stage's steps one at a time, on a synthetic mart (feature_fixtures), no MLflow.

run_evaluate = load_windows -> forest / LACE / logreg / oracle scoring -> importance -> result -> files;
tests/test_model_end_to_end.py runs the whole stage after train.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from pipelines import contracts
from pipelines.config import EvaluateParams, Paths, WarehouseParams
from pipelines.evaluate import (
    EvalWindows,
    Scoring,
    evaluation_result,
    forest_scoring,
    importance_step,
    lace_scoring,
    load_windows,
    logreg_scoring,
    oracle_scoring,
    uncalibrated_scoring,
)
from pipelines.model import data as fdata
from pipelines.model.artifacts import ModelBundle, ModelMeta
from pipelines.model.calibration import calibration_slope_intercept
from pipelines.model.metrics import calibration_metrics
from pipelines.model.preprocessing import forest_pipeline
from pipelines.model.pyfunc_model import Calibration
from pipelines.model.thresholds import RULE_F2, RULE_FLOOR
from tests.support.feature_fixtures import write_fixture

TRAIN_END, VALID_END = date(2023, 10, 1), date(2024, 4, 1)
FLOOR = 0.2
META = ModelMeta(
    model_name="m", version="7", model_uri="models:/m/7", experiment="exp", threshold=0.5,
    threshold_rule=RULE_FLOOR, min_precision=FLOOR, numeric_features=tuple(fdata.NUMERIC),
    categorical_features=tuple(fdata.CATEGORICAL), train_end=TRAIN_END, valid_end=VALID_END, best_params={},
    seed=3, features_md5="md5",
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, EvalWindows, ModelBundle]:
    root = tmp_path_factory.mktemp("evaluate-steps")
    write_fixture(root, n_rows=3000, seed=4)
    paths = Paths(root)
    windows = load_windows(paths, META, WarehouseParams().readmission_window_days)
    hp = {"n_estimators": 15, "max_depth": 6, "min_samples_leaf": 10, "max_features": "sqrt"}
    pipeline = forest_pipeline(hp, 3, 1).fit(windows.x_train, windows.y_train)
    return paths, windows, ModelBundle(pipeline, 0.5, tuple(fdata.NUMERIC), tuple(fdata.CATEGORICAL))


def test_windows_are_the_trained_split(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    paths, windows, _ = project
    frame = fdata.load_features(paths)
    split = windows.split
    # the stays whose 30-day label window crosses the validation / test start are dropped (label gap)
    assert split.gap_days == WarehouseParams().readmission_window_days
    assert split.train.height + split.valid.height + split.test.height + sum(split.gap_dropped) == frame.height
    assert split.test[fdata.DATE].min() >= VALID_END > split.valid[fdata.DATE].max()
    assert split.train[fdata.DATE].max() < TRAIN_END <= split.valid[fdata.DATE].min()
    assert (len(windows.x_test), windows.y_test.size) == (split.test.height, split.test.height)
    assert list(windows.x_test.columns) == fdata.FEATURES
    np.testing.assert_array_equal(windows.y_valid, split.valid[fdata.LABEL].to_numpy())


def test_forest_counts_and_rates(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    _, windows, bundle = project
    rf = forest_scoring(bundle, windows)
    m, y = rf.metrics, windows.y_test
    assert rf.scores.shape == y.shape
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == y.size == m["n"]
    assert m["tp"] + m["fn"] == int(y.sum())
    flag = rf.scores >= bundle.threshold
    assert m["tp"] + m["fp"] == int(flag.sum())
    assert m["recall"] == pytest.approx(m["tp"] / (m["tp"] + m["fn"]), abs=1e-6)
    assert m["precision"] == pytest.approx(m["tp"] / (m["tp"] + m["fp"]), abs=1e-6)
    assert m["flagged_share"] == pytest.approx(flag.mean(), abs=1e-6)
    assert m["threshold"] == 0.5
    np.testing.assert_array_equal(rf.scores, bundle.pipeline.predict_proba(windows.x_test)[:, 1])


def test_lace_flags_at_the_cutoff(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    _, windows, _ = project
    lace = lace_scoring(windows, 10)
    score = windows.split.test["lace_score"].to_numpy()
    flag, y = score >= 10, windows.y_test
    np.testing.assert_array_equal(lace.scores, score.astype(float))
    assert lace.metrics["cutoff"] == 10
    assert lace.metrics["flagged_share"] == pytest.approx(flag.mean(), abs=1e-6)
    assert lace.metrics["recall"] == pytest.approx((flag & (y == 1)).sum() / y.sum(), abs=1e-6)
    assert set(lace.metrics) == {"roc_auc", "pr_auc", "cutoff", "recall", "precision", "f2", "flagged_share"}
    stricter = lace_scoring(windows, 14)
    assert stricter.metrics["flagged_share"] < lace.metrics["flagged_share"]


def test_logreg_threshold_from_validation(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    _, windows, _ = project
    logreg = logreg_scoring(windows, EvaluateParams(), FLOOR)
    assert logreg.scores.shape == windows.y_test.shape
    assert 0.0 <= logreg.scores.min() <= logreg.scores.max() <= 1.0
    assert logreg.metrics["threshold_rule"] in (RULE_FLOOR, RULE_F2)
    assert logreg.metrics["n"] == windows.y_test.size
    assert logreg.metrics["flagged_share"] == pytest.approx(
        (logreg.scores >= logreg.metrics["threshold"] - 1e-6).mean(), abs=0.01)
    # a floor no threshold reaches on validation (above any score's precision): the max-F2 fallback
    unreachable = logreg_scoring(windows, EvaluateParams(), 1.0 + 1e-9)
    assert unreachable.metrics["threshold_rule"] == RULE_F2


def test_oracle_left_out_without_truth(project: tuple[Paths, EvalWindows, ModelBundle], tmp_path: Path) -> None:
    _, windows, _ = project
    p_rf = np.full(windows.y_test.size, 0.5)
    assert oracle_scoring(tmp_path / "absent.parquet", windows, p_rf, FLOOR) is None
    # truth about none of the test stays: no usable rows
    empty = tmp_path / "truth.parquet"
    pl.DataFrame({"stay_id": ["none"], "episode_id": ["none"], "true_probability": [0.5]}).write_parquet(empty)
    assert oracle_scoring(empty, windows, p_rf, FLOOR) is None


def test_oracle_covers_the_truth(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    paths, windows, bundle = project
    rf = forest_scoring(bundle, windows)
    oracle = oracle_scoring(paths.truth / contracts.TRUTH_STAYS_FILE, windows, rf.scores, FLOOR)
    assert oracle is not None
    assert 0.9 < oracle.metrics["coverage"] <= 1.0
    assert oracle.metrics["n"] == oracle.y.size == oracle.scores.size
    assert oracle.y.size == pytest.approx(oracle.metrics["coverage"] * windows.y_test.size, abs=1)
    assert set(oracle.gap) == {"roc_auc_oracle_minus_rf", "pr_auc_oracle_minus_rf", "rf_share_of_oracle_auc_lift"}
    assert oracle.gap["roc_auc_oracle_minus_rf"] > 0  # the true probabilities beat a 15-tree forest


def test_uncalibrated_block_shows_what_calibration_changed(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    _, windows, bundle = project
    raw = uncalibrated_scoring(bundle, windows)
    assert raw.metrics == {"calibration": "none", **calibration_metrics(windows.y_test, raw.scores)}
    np.testing.assert_array_equal(raw.scores, forest_scoring(bundle, windows).scores)  # no map: the same score
    # Recalibrate to the test window itself: the served probability's Brier can only improve.
    slope, intercept = calibration_slope_intercept(windows.y_test, raw.scores)
    mapped = replace(bundle, calibration=Calibration("sigmoid", slope=slope, intercept=intercept))
    rf = forest_scoring(mapped, windows)
    np.testing.assert_array_equal(uncalibrated_scoring(mapped, windows).scores, raw.scores)
    assert rf.metrics["brier"] <= raw.metrics["brier"]
    assert rf.metrics["calibration_slope"] == pytest.approx(1.0, abs=1e-3)
    assert rf.metrics["calibration_intercept"] == pytest.approx(0.0, abs=1e-3)
    assert rf.metrics["roc_auc"] == pytest.approx(roc_auc_score(windows.y_test, raw.scores), abs=1e-6)


def test_importance_sample_and_result(project: tuple[Paths, EvalWindows, ModelBundle]) -> None:
    _, windows, bundle = project
    ep = EvaluateParams(permutation_max_rows=1000, permutation_repeats=2)
    importance = importance_step(bundle, windows, ep, 3)
    assert importance.rows == min(1000, windows.y_test.size)
    assert list(importance.mean) == list(importance.std) == fdata.FEATURES
    assert all(s >= 0 for s in importance.std.values())
    assert importance_step(bundle, windows, ep, 3) == importance  # seeded

    rf, lace = forest_scoring(bundle, windows), lace_scoring(windows, 10)
    logreg = Scoring(rf.scores, {"roc_auc": 0.5})
    raw = uncalibrated_scoring(bundle, windows)
    result = evaluation_result(rf, raw, lace, logreg, None, importance, windows, META)
    assert set(result) == {"rf", "rf_uncalibrated", "lace", "logreg", "test_rows", "test_window_start", "model_version",
                           "permutation_rows", "permutation_importance"}  # no oracle, no gap
    assert (result["model_version"], result["test_window_start"]) == ("7", "2024-04-01")
    assert (result["test_rows"], result["permutation_rows"]) == (windows.y_test.size, importance.rows)
    values = list(result["permutation_importance"].values())
    assert values == sorted(values, reverse=True)
    assert set(result["permutation_importance"]) == set(fdata.FEATURES)
