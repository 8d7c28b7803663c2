"""Training that scales: the tuning sample, the bootstrap cap, the learning curve, chunked scoring."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.ensemble._forest import _get_n_samples_bootstrap

from pipelines import monitor
from pipelines.config import Params, Paths
from pipelines.model import data as fdata
from pipelines.model import scaling, tracking
from pipelines.model.artifacts import ModelBundle, load_model
from pipelines.model.preprocessing import forest_pipeline
from pipelines.model.pyfunc_model import predict_frame
from pipelines.train import run_train
from tests.support.feature_fixtures import make_features, write_fixture

# ---- the tuning sample ---------------------------------------------------------------------------


def _window(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """n rows sorted by date over 2 years, more rows in later months, ~10 % positives drifting up."""
    rng = np.random.default_rng(seed)
    offsets = np.sort((rng.random(n) ** 0.7 * 730).astype(np.int64))
    dates = (np.datetime64("2022-01-01") + offsets).astype("datetime64[D]")
    y = (rng.random(n) < 0.06 + 0.08 * offsets / 730).astype(np.int64)
    return dates, y


def test_sample_is_capped_sorted_and_unique() -> None:
    dates, y = _window(20_000)
    idx = scaling.time_stratified_sample(dates, y, 3_000, seed=5)
    assert idx.size == 3_000
    assert np.all(np.diff(idx) > 0)  # sorted, no duplicate: date order of the window is kept
    assert np.all(np.diff(dates[idx].astype(np.int64)) >= 0)
    assert idx.min() >= 0
    assert idx.max() < y.size


def test_sample_keeps_label_share_and_every_month() -> None:
    dates, y = _window(20_000)
    idx = scaling.time_stratified_sample(dates, y, 2_000, seed=5)
    assert abs(y[idx].mean() - y.mean()) < 0.002  # stratified: prevalence kept to rounding
    months = dates.astype("datetime64[M]")
    full = pd.Series(months).value_counts(normalize=True).sort_index()
    sample = pd.Series(months[idx]).value_counts(normalize=True).sort_index()
    assert list(sample.index) == list(full.index)  # every month present
    assert np.abs(sample.to_numpy() - full.to_numpy()).max() < 0.002  # each month keeps its share
    # the label drifts over time: positives of the sample follow it per half of the window
    half = idx < y.size // 2
    assert abs(y[idx][half].mean() - y[: y.size // 2].mean()) < 0.01
    assert abs(y[idx][~half].mean() - y[y.size // 2:].mean()) < 0.01


def test_sample_is_deterministic_under_the_seed() -> None:
    dates, y = _window(10_000)
    a = scaling.time_stratified_sample(dates, y, 1_500, seed=9)
    b = scaling.time_stratified_sample(dates, y, 1_500, seed=9)
    c = scaling.time_stratified_sample(dates, y, 1_500, seed=10)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_below_cap_is_the_whole_window() -> None:
    dates, y = _window(800)
    assert np.array_equal(scaling.time_stratified_sample(dates, y, 800, seed=1), np.arange(800))
    assert np.array_equal(scaling.time_stratified_sample(dates, y, 5_000, seed=1), np.arange(800))
    with pytest.raises(ValueError, match="max_rows"):
        scaling.time_stratified_sample(dates, y, 0, seed=1)
    with pytest.raises(ValueError, match="dates"):
        scaling.time_stratified_sample(dates[:10], y, 5, seed=1)


def test_sample_keeps_time_folds_with_their_gap() -> None:
    dates, y = _window(20_000)
    idx = scaling.time_stratified_sample(dates, y, 3_000, seed=5)
    sample_dates = dates[idx]
    folds = fdata.time_folds(sample_dates, 3, 30)
    assert len(folds) == 3
    for train_idx, valid_idx in folds:
        gap = sample_dates[valid_idx].min() - sample_dates[train_idx].max()
        assert gap > np.timedelta64(30, "D")
    # the folds' first validation days are those of the full window to within a few days
    full_cuts, sample_cuts = fdata.cut_dates(dates, 3), fdata.cut_dates(sample_dates, 3)
    assert all(abs((a - b).days) <= 7 for a, b in zip(full_cuts, sample_cuts, strict=True))


# ---- the bootstrap cap ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "n_rows"), [(0.5, 1_000), (0.8310745771903563, 26_968), (0.999, 50_001),
                                                (0.55, 1_070_011)])
def test_bootstrap_rows_below_cap_is_sklearns_own_count(fraction: float, n_rows: int) -> None:
    assert scaling.bootstrap_rows(fraction, n_rows, 10**9) == _get_n_samples_bootstrap(n_rows, fraction, None)


def test_bootstrap_rows_cap_binds_at_scale() -> None:
    assert scaling.bootstrap_rows(0.5, 1_070_000, 100_000) == 100_000
    assert scaling.bootstrap_rows(0.05, 1_070_000, 100_000) == 53_500
    assert scaling.bootstrap_rows(1.0, 300, 100_000) == 300
    assert scaling.bootstrap_rows(0.001, 50, 100_000) == 1  # never an empty bootstrap
    hp = {"n_estimators": 10, "max_samples": 0.9}
    capped = scaling.capped_forest_params(hp, 2_000_000, 100_000)
    assert capped == {"n_estimators": 10, "max_samples": 100_000}
    assert hp["max_samples"] == 0.9  # the searched params are left as they are
    for bad in ((0.0, 10, 5), (1.5, 10, 5), (0.5, 0, 5), (0.5, 10, 0)):
        with pytest.raises(ValueError, match="bootstrap_rows"):
            scaling.bootstrap_rows(*bad)


def test_count_below_cap_gives_the_same_forest_as_the_fraction() -> None:
    features, _ = make_features(n_rows=1500, seed=2)
    x, y = fdata.to_model_input(features), fdata.labels(features)
    hp = {"n_estimators": 12, "max_depth": 6, "min_samples_leaf": 5, "max_samples": 0.7}
    as_fraction = forest_pipeline(hp, 4, 1).fit(x, y)
    as_count = forest_pipeline(scaling.capped_forest_params(hp, len(x), 10_000), 4, 1).fit(x, y)
    assert as_count.named_steps["rf"].max_samples == 1050
    assert np.array_equal(as_fraction.predict_proba(x), as_count.predict_proba(x))


def test_capped_trees_draw_the_capped_count() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((5_000, 4)), (rng.random(5_000) < 0.3).astype(int)
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=1,
                                    max_samples=scaling.bootstrap_rows(0.9, 5_000, 400)).fit(x, y)
    for tree in forest.estimators_:
        assert tree.tree_.weighted_n_node_samples[0] == pytest.approx(400)  # bootstrap weights sum to the count


# ---- learning curve sizes ------------------------------------------------------------------------


def test_learning_curve_sizes() -> None:
    assert scaling.learning_curve_sizes(1_000_000, 5, 2_000) == [2_000, 9_457, 44_721, 211_474, 1_000_000]
    assert scaling.learning_curve_sizes(1_500, 5, 2_000) == [1_500]
    assert scaling.learning_curve_sizes(10_000, 1, 2_000) == [10_000]
    assert scaling.plateau_rows([100, 1_000, 10_000], [0.70, 0.798, 0.80], 0.005) == 1_000
    assert scaling.plateau_rows([100, 1_000], [float("nan"), float("nan")], 0.005) is None


# ---- chunked prediction --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, pd.DataFrame, ModelBundle]:
    features, _ = make_features(n_rows=2000, seed=8)
    x, y = fdata.to_model_input(features), fdata.labels(features)
    pipeline = forest_pipeline({"n_estimators": 20, "max_depth": 8, "min_samples_leaf": 5}, 3, 1).fit(x, y)
    bundle = ModelBundle(pipeline, 0.5, tuple(fdata.NUMERIC), tuple(fdata.CATEGORICAL))
    return pipeline, x, bundle


# (chunk_rows, rows scored): a chunk per row, uneven last chunks, exactly one chunk, fewer rows than a
# chunk. The small chunks score a slice of the window: each chunk is one predict call (~10 ms), and
# 2,000 one-row calls would test nothing more than 40.
@pytest.mark.parametrize(("chunk_rows", "rows"), [(1, 40), (7, 300), (333, 2000), (2000, 2000), (10_000, 2000)])
def test_chunked_prediction_equals_unchunked(fitted: tuple[Any, pd.DataFrame, ModelBundle],
                                             chunk_rows: int, rows: int) -> None:
    pipeline, x, bundle = fitted
    x = x.iloc[rows // 3: rows // 3 + rows] if rows < len(x) else x  # a slice off the start: index kept
    assert len(x) == rows
    whole = pipeline.predict_proba(x)[:, 1]
    assert np.array_equal(scaling.predict_positive(pipeline, x, chunk_rows), whole)
    chunked = scaling.predict_frame_chunked(bundle, x, chunk_rows)
    pd.testing.assert_frame_equal(chunked, predict_frame(bundle, x))
    assert chunked["high_risk"].sum() == int((whole >= 0.5).sum())
    with pytest.raises(ValueError, match="chunk_rows"):
        scaling.predict_positive(pipeline, x, 0)


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_prediction_has_the_bits_of_one_thread(fitted: tuple[Any, pd.DataFrame, ModelBundle],
                                                        threads: int) -> None:
    pipeline, x, _ = fitted  # n_jobs=1: each row's votes are added in tree order in every thread
    whole = pipeline.predict_proba(x)[:, 1]
    assert np.array_equal(scaling.predict_positive(pipeline, x, threads=threads), whole)
    assert np.array_equal(scaling.predict_positive(pipeline, x, 300, threads=threads), whole)


def test_monitor_scores_in_chunks(fitted: tuple[Any, pd.DataFrame, ModelBundle],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, bundle = fitted
    features, _ = make_features(n_rows=2000, seed=8)
    whole = monitor.score(bundle, features)
    monkeypatch.setattr(scaling, "PREDICT_CHUNK_ROWS", 128)
    chunked = monitor.score(bundle, features)
    assert chunked.equals(whole)
    assert chunked.height == 2000
    assert chunked["probability"].null_count() == 0


# ---- the train stage with small caps ---------------------------------------------------------------


def test_train_tunes_on_the_sample_and_caps_the_refit(tmp_path: Path) -> None:
    write_fixture(tmp_path, n_rows=4000, seed=11)
    paths = Paths(tmp_path)
    params = Params.model_validate({"train": {
        "n_trials": 2, "tune_max_rows": 900, "max_samples_rows": 250, "learning_curve_points": 3,
        "learning_curve_min_rows": 200, "pruning": False,
        "search": {"n_estimators": [10, 15], "max_depth": [3, 6], "min_samples_leaf": [5, 20]},
    }})
    result = run_train(paths, params)
    written = json.loads((paths.metrics / "train.json").read_text())
    assert written["tune_rows"] == 900
    assert written["refit_bootstrap_rows"] == 250
    bundle, meta = load_model(paths)
    assert bundle.pipeline.named_steps["rf"].max_samples == 250
    n_train = written["rows"]["train"]
    assert n_train > 900

    client = tracking.connect(paths)
    run_id = client.get_model_version(meta.model_name, meta.version).run_id
    run = client.get_run(run_id)
    assert run.data.params["n_tune"] == "900"
    assert run.data.params["refit_bootstrap_rows"] == "250"
    history = client.get_metric_history(run_id, "lc_roc_auc")
    steps = sorted(m.step for m in history)
    assert steps == scaling.learning_curve_sizes(n_train, 3, 200)
    assert all(0.5 < m.value <= 1 for m in history)
    assert result["learning_curve_plateau_rows"] in steps
    artifacts = {a.path for a in client.list_artifacts(run_id, "learning_curve")}
    assert artifacts == {"learning_curve/learning_curve.csv", "learning_curve/learning_curve.html"}
    csv_path = client.download_artifacts(run_id, "learning_curve/learning_curve.csv", str(tmp_path))
    curve = pl.read_csv(csv_path)
    assert curve["rows"].to_list() == steps
    assert curve["bootstrap_rows"].max() <= 250
    # trials train on the sample's folds: fold training sets are smaller than the sample
    trials = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(trials) == 2
    assert meta.train_end == date(2023, 10, 1)
