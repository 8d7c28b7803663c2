"""The tuning objective: recall at the precision floor per time-ordered fold, 0 when unreachable."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest

from pipelines.config import Paths, TrainParams
from pipelines.model import data as fdata
from pipelines.model import tracking
from pipelines.train import _Objective
from tests.support.feature_fixtures import make_features

SMALL = {"n_estimators": (10, 15), "max_depth": (3, 6), "min_samples_leaf": (5, 20)}


def _study_value(tmp_path: Path, y: np.ndarray, min_precision: float) -> tuple[float, dict[str, float]]:
    features, _ = make_features(n_rows=1200, seed=4)
    frame = features.sort(fdata.DATE)
    x = fdata.to_model_input(frame)
    folds = fdata.time_folds(frame[fdata.DATE].to_numpy(), 2, 0)
    tp = TrainParams(n_trials=1, cv_folds=2, cv_gap_days=0, min_precision=min_precision, search=SMALL)
    client = tracking.connect(Paths(tmp_path))
    experiment_id = tracking.ensure_experiment(client, Paths(tmp_path), "objective-test")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=1))
    with mlflow.start_run(experiment_id=experiment_id) as parent:
        study.optimize(_Objective(tp, 1, x, y, folds, experiment_id), n_trials=1)
    child = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(child) == 1
    return float(study.best_value), child[0].data.metrics


def test_objective_is_mean_recall_at_floor(tmp_path: Path) -> None:
    features, _ = make_features(n_rows=1200, seed=4)
    y = fdata.labels(features.sort(fdata.DATE))
    value, metrics = _study_value(tmp_path, y, 0.2)
    folds = [metrics["fold0_recall_at_floor"], metrics["fold1_recall_at_floor"]]
    assert value == pytest.approx(np.mean(folds), abs=1e-6)
    assert metrics["cv_recall_at_floor"] == pytest.approx(value, abs=1e-6)
    assert metrics["fold0_precision"] >= 0.2
    assert metrics["fold0_floor_met"] == 1.0


def test_fold_without_reachable_floor_scores_zero(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    features, _ = make_features(n_rows=1200, seed=4)
    frame = features.sort(fdata.DATE)
    age = frame["age"].to_numpy()
    # first third (training of fold 0): the old are readmitted; afterwards only the young:
    # the model ranks validation negatives first and no threshold reaches precision 0.9
    y = np.where(np.arange(frame.height) < frame.height // 3, age > 75, age < 45).astype(np.int64)
    with caplog.at_level("WARNING", logger="pipelines.train"):
        value, metrics = _study_value(tmp_path, y, 0.9)
    assert metrics["fold0_floor_met"] == 0.0
    assert metrics["fold0_recall_at_floor"] == 0.0
    assert "fold objective = 0" in caplog.text
    assert value == pytest.approx(metrics["fold1_recall_at_floor"] / 2, abs=1e-6)
