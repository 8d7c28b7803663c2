"""The train stage's steps one at a time, and the typed model files (bundle, metadata).

Small synthetic marts (feature_fixtures); only the study / register test opens an MLflow store.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, cast

import joblib
import mlflow
import numpy as np
import pytest

from pipelines.config import Params, Paths, TrainParams
from pipelines.errors import MissingInputError, PipelineInputError
from pipelines.model import data as fdata
from pipelines.model import pyfunc_model
from pipelines.model.artifacts import (
    ModelBundle,
    ModelMeta,
    ModelMetaError,
    load_model,
    read_bundle,
    read_meta,
    write_bundle,
    write_meta,
)
from pipelines.model.metrics import probability_metrics
from pipelines.model.pyfunc_model import BundleError, Calibration, loaded_bundle
from pipelines.model.thresholds import RULE_FLOOR
from pipelines.train import (
    Refit,
    StudyResult,
    Tracking,
    TuningTimeoutError,
    Windows,
    open_tracking,
    refit,
    register,
    run_study,
    tuning_sample,
    version_tags,
)
from tests.support.feature_fixtures import write_fixture

SEED = 5
SEARCH = {"n_estimators": [5, 12], "max_depth": [2, 6], "min_samples_leaf": [5, 40],
          "max_features": ["sqrt", 0.5], "max_samples": [0.5, 0.9]}


def _tp(**overrides: Any) -> TrainParams:
    raw = {"n_trials": 3, "n_jobs": 1, "cv_folds": 2, "cv_gap_days": 10, "search": SEARCH,
           "optuna_plots": False, "learning_curve_points": 0, **overrides}
    return Params.model_validate({"train": raw}).train


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Windows:
    from pipelines.train import load_windows

    root = tmp_path_factory.mktemp("steps")
    write_fixture(root, n_rows=2500, seed=3)
    return load_windows(Paths(root), _tp(), Params().warehouse.readmission_window_days)


# ---- tuning_sample -----------------------------------------------------------------------------

def test_tuning_sample_is_bounded_seeded_and_in_date_order(windows: Windows) -> None:
    tp = _tp(tune_max_rows=400)
    sample = tuning_sample(windows, tp, SEED)
    assert sample.index.size == 400 < len(windows.x_train)
    assert np.all(np.diff(sample.index) > 0)  # positions in the window, increasing
    dates = windows.train_dates[sample.index]
    assert np.all(dates[:-1] <= dates[1:])  # so the folds stay time-ordered
    assert sample.x.equals(windows.x_train.iloc[sample.index])
    np.testing.assert_array_equal(sample.y, windows.y_train[sample.index])
    assert len(sample.folds) == tp.cv_folds
    assert len(sample.fold_starts) == tp.cv_folds
    for (train_idx, valid_idx), start in zip(sample.folds, sample.fold_starts, strict=True):
        assert train_idx.max() < valid_idx.min()  # expanding window: train rows before validation rows
        assert dates[valid_idx].min().astype("datetime64[D]") >= np.datetime64(start)
    assert sample.fold_starts == sorted(sample.fold_starts)
    np.testing.assert_array_equal(tuning_sample(windows, tp, SEED).index, sample.index)  # seeded
    assert not np.array_equal(tuning_sample(windows, tp, SEED + 1).index, sample.index)


def test_tuning_sample_takes_the_whole_small_window(windows: Windows) -> None:
    sample = tuning_sample(windows, _tp(tune_max_rows=100_000), SEED)
    np.testing.assert_array_equal(sample.index, np.arange(len(windows.x_train)))


# ---- refit ----------------------------------------------------------------------------------------

HP = {"n_estimators": 12, "max_depth": 6, "min_samples_leaf": 10, "max_features": "sqrt", "max_samples": 0.8}


def test_refit_threshold_meets_the_floor_on_validation(windows: Windows) -> None:
    tp = _tp(min_precision=0.2, max_samples_rows=300)
    fitted = refit(windows, tp, SEED, HP)
    assert fitted.bootstrap_rows == 300  # 0.8 x the window, capped
    assert fitted.bundle.pipeline.named_steps["rf"].max_samples == 300
    assert fitted.bundle.pipeline.named_steps["rf"].n_jobs == 1  # saved for serving
    assert fitted.bundle.threshold == fitted.point.threshold
    assert fitted.bundle.features == fdata.FEATURES
    assert fitted.point.rule == RULE_FLOOR
    score = fitted.bundle.pipeline.predict_proba(windows.x_valid)[:, 1]
    p_valid = fitted.bundle.calibration.apply(score)  # the threshold is on the calibrated scale
    assert fitted.bundle.calibration.method == "sigmoid"
    y = windows.y_valid
    # Platt's maximum likelihood matches the mean to the rate; the balanced forest's raw score overstates it
    assert p_valid.mean() == pytest.approx(y.mean(), abs=1e-4)
    assert score.mean() > 1.5 * y.mean()
    assert fitted.valid_metrics["brier"] < fitted.valid_uncalibrated["brier"]
    flag = p_valid >= fitted.point.threshold
    recall, precision = (flag & (y == 1)).sum() / y.sum(), (flag & (y == 1)).sum() / flag.sum()
    assert precision >= tp.min_precision
    assert fitted.point.recall == pytest.approx(recall)
    assert fitted.point.precision == pytest.approx(precision)
    assert fitted.valid_metrics == probability_metrics(y, p_valid, fitted.point.threshold)
    again = refit(windows, tp, SEED, HP)  # same params and seed, same model
    again_score = again.bundle.pipeline.predict_proba(windows.x_valid)[:, 1]
    np.testing.assert_array_equal(again.bundle.calibration.apply(again_score), p_valid)


def test_version_tags_carry_the_operating_point(windows: Windows) -> None:
    tp = _tp(min_precision=0.2)
    fitted = refit(windows, tp, SEED, HP)
    tags = version_tags(fitted, tp, "md5", "abc123", "run-1")
    assert tags["threshold"] == f"{fitted.point.threshold:.6f}"
    assert tags["threshold_rule"] == RULE_FLOOR
    assert tags["min_precision"] == "0.2"
    assert float(tags["valid_recall"]) == pytest.approx(fitted.valid_metrics["recall"], abs=1e-6)
    assert (tags["train_end"], tags["valid_end"]) == (tp.train_end.isoformat(), tp.valid_end.isoformat())
    assert (tags["features_md5"], tags["git_commit"], tags["run_id"]) == ("md5", "abc123", "run-1")
    assert tags["dvc_experiment"] == os.environ.get("DVC_EXP_NAME", "")
    assert tags["dvc_baseline_rev"] == os.environ.get("DVC_EXP_BASELINE_REV", "abc123")


# ---- run_study and register (an MLflow store in tmp_path) ---------------------------------------------

def _in_space(params: dict[str, Any]) -> bool:
    def between(name: str) -> bool:
        low, high = SEARCH[name]
        return bool(low <= params[name] <= high)
    return (all(between(n) for n in ("n_estimators", "max_depth", "min_samples_leaf", "max_samples"))
            and params["max_features"] in SEARCH["max_features"])


@pytest.mark.parametrize("on_timeout", ["error", "keep"])
def test_timeout_before_n_trials_stops_or_is_reported(windows: Windows, tmp_path: Path, on_timeout: str) -> None:
    tp = _tp(tune_max_rows=600, pruning=False, n_trials=4, timeout_s=1e-3, on_timeout=on_timeout)
    sample = tuning_sample(windows, tp, SEED)
    tracker = open_tracking(Paths(tmp_path), tp)
    with mlflow.start_run(experiment_id=tracker.experiment_id):
        if on_timeout == "error":
            message = r"timeout_s 0\.001 reached after 1 of 4 trials.*on_timeout: keep"
            with pytest.raises(TuningTimeoutError, match=message):
                run_study(sample, tp, SEED, tracker.experiment_id)
            return
        study = run_study(sample, tp, SEED, tracker.experiment_id)
    assert study.timeout_hit
    assert study.n_run == 1
    assert issubclass(TuningTimeoutError, PipelineInputError)  # the CLI prints one line, exit code 2


def test_study_then_register(windows: Windows, tmp_path: Path) -> None:
    tp = _tp(tune_max_rows=600, pruning=False)
    sample = tuning_sample(windows, tp, SEED)
    tracker = open_tracking(Paths(tmp_path), tp)
    with mlflow.start_run(experiment_id=tracker.experiment_id) as parent:
        study: StudyResult = run_study(sample, tp, SEED, tracker.experiment_id)
        again = run_study(sample, tp, SEED, tracker.experiment_id)
        fitted: Refit = refit(windows, tp, SEED, study.best_params)
        model_file = tmp_path / "model.joblib"
        write_bundle(model_file, fitted.bundle)
        registered = register(model_file, fitted, windows, tp, tracker, parent.info.run_id)

    assert study.n_run == study.n_complete == tp.n_trials
    assert study.n_pruned == 0
    assert not study.timeout_hit
    assert _in_space(study.best_params)
    assert all(_in_space(t.params) for t in study.study.trials)
    assert 0.0 <= study.best_value <= 1.0
    assert study.best_value == max(t.value or 0.0 for t in study.study.trials)
    assert (again.best_params, again.best_value) == (study.best_params, study.best_value)  # seeded TPE
    trial_runs = tracker.client.search_runs([tracker.experiment_id],
                                            f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(trial_runs) == 2 * tp.n_trials  # one nested run per trial

    version = tracker.client.get_model_version(tp.model_name, registered.version)
    assert registered.run_id == parent.info.run_id == version.run_id
    assert {k: version.tags[k] for k in registered.tags} == registered.tags
    assert version.tags["threshold"] == f"{fitted.point.threshold:.6f}"
    assert version.tags["run_id"] == parent.info.run_id
    loaded = mlflow.pyfunc.load_model(f"models:/{tp.model_name}/{registered.version}")
    bundle = loaded_bundle(loaded)  # a ModelBundle of the logged copy of pyfunc_model.py
    assert bundle is not None
    assert bundle.threshold == fitted.bundle.threshold
    assert bundle.features == fitted.bundle.features


# ---- the typed model files ---------------------------------------------------------------------------

class _Held:
    def __init__(self, bundle: object) -> None:
        self.bundle = bundle


class _Loaded:
    """What mlflow.pyfunc.load_model returns, as far as loaded_bundle looks."""

    def __init__(self, bundle: object) -> None:
        self.held = _Held(bundle)

    def unwrap_python_model(self) -> _Held:
        return self.held


def test_bundle_file_is_the_format_2_dict(tmp_path: Path) -> None:
    calibration = Calibration("sigmoid", slope=0.9, intercept=-1.5)
    bundle = ModelBundle(pipeline={"a fitted": "pipeline"}, threshold=0.25, numeric=("age",),
                         categorical=("sex",), calibration=calibration)
    write_bundle(tmp_path / "model.joblib", bundle)
    payload = joblib.load(tmp_path / "model.joblib")
    assert payload == {"format": 2, "pipeline": {"a fitted": "pipeline"}, "threshold": 0.25,
                       "numeric": ["age"], "categorical": ["sex"],
                       "calibration": {"method": "sigmoid", "slope": 0.9, "intercept": -1.5}}
    assert list(payload) == ["format", "pipeline", "threshold", "numeric", "categorical", "calibration"]
    assert read_bundle(tmp_path / "model.joblib") == bundle


def test_format_1_bundle_still_reads_as_uncalibrated(tmp_path: Path) -> None:
    old = tmp_path / "old.joblib"
    joblib.dump({"format": 1, "pipeline": "p", "threshold": 0.3, "numeric": ["age"], "categorical": ["sex"]}, old)
    bundle = read_bundle(old)
    assert bundle.calibration.method == "none"
    np.testing.assert_array_equal(bundle.calibration.apply(np.array([0.0, 0.3, 1.0])), [0.0, 0.3, 1.0])


def test_calibration_maps_round_trip_and_stay_monotone() -> None:
    score = np.linspace(0.0, 1.0, 101)
    sigmoid = Calibration("sigmoid", slope=1.1, intercept=-1.6)
    isotonic = Calibration("isotonic", x=(0.1, 0.5, 0.9), y=(0.02, 0.1, 0.4))
    for calibration in (sigmoid, isotonic):
        again = Calibration.from_payload(calibration.to_payload(), "x")
        assert again == calibration
        mapped = again.apply(score)
        assert np.all(np.diff(mapped) >= 0)
        assert np.all((mapped >= 0) & (mapped <= 1))
    # sigmoid: p = expit(intercept + slope * logit(score)); score 0.5 has logit 0
    assert sigmoid.apply(np.array([0.5]))[0] == pytest.approx(1 / (1 + np.exp(1.6)))
    # isotonic: linear between knots, flat outside them
    np.testing.assert_allclose(isotonic.apply(np.array([0.0, 0.3, 0.95])), [0.02, 0.06, 0.4])
    with pytest.raises(BundleError, match=r"^m\.joblib: calibration must be a dict"):
        Calibration.from_payload({"method": "platt"}, "m.joblib")
    with pytest.raises(BundleError, match=r"m\.joblib"):
        Calibration.from_payload({"method": "isotonic", "x": [0.5, 0.1], "y": [0.1, 0.2]}, "m.joblib")


def test_bundle_file_errors_name_the_file(tmp_path: Path) -> None:
    payload = ModelBundle("p", 0.25, ("age",), ("sex",)).to_payload()
    future = tmp_path / "future.joblib"
    joblib.dump({**payload, "format": 3}, future)
    with pytest.raises(BundleError, match=rf"^{re.escape(str(future))}: unknown model bundle format 3 "):
        read_bundle(future)
    unversioned = tmp_path / "unversioned.joblib"
    joblib.dump({k: v for k, v in payload.items() if k != "format"}, unversioned)
    with pytest.raises(BundleError, match=r"unversioned\.joblib: unknown model bundle format None"):
        read_bundle(unversioned)
    partial = tmp_path / "partial.joblib"
    joblib.dump({k: v for k, v in payload.items() if k not in ("threshold", "calibration")}, partial)
    with pytest.raises(BundleError, match=r"partial\.joblib: model bundle lacks key\(s\) threshold, calibration"):
        read_bundle(partial)
    listed = tmp_path / "list.joblib"
    joblib.dump([payload], listed)
    with pytest.raises(BundleError, match=r"list\.joblib: not a model bundle \(a list"):
        read_bundle(listed)
    assert issubclass(BundleError, PipelineInputError)  # the CLI prints one line and exits 2
    assert issubclass(BundleError, ValueError)  # what load_bundle raised before


def test_load_model_names_the_missing_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    with pytest.raises(MissingInputError, match=r"models/model\.joblib: trained model not found"):
        load_model(paths)
    paths.models.mkdir()
    write_bundle(paths.models / "model.joblib", ModelBundle("p", 0.25, ("age",), ("sex",)))
    with pytest.raises(MissingInputError, match=r"models/model_meta\.json: trained model not found"):
        load_model(paths)
    (paths.models / "model_meta.json").write_text(json.dumps(META_JSON), encoding="utf-8")
    bundle, meta = load_model(paths)
    assert (bundle.threshold, meta.version, meta.threshold) == (0.25, "1", 0.49225)


def test_loaded_bundle_accepts_old_and_new_versions(tmp_path: Path) -> None:
    bundle = ModelBundle(pipeline="p", threshold=0.4, numeric=("age",), categorical=("sex",))
    assert loaded_bundle(_Loaded(bundle.to_payload())) == bundle  # versions logged with the dict
    # MLflow loads each version's copy of pyfunc_model.py as a module of its own: another class
    spec = importlib.util.spec_from_file_location("code_model_copy", pyfunc_model.__file__)
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    sys.modules["code_model_copy"] = copy
    try:
        spec.loader.exec_module(copy)
        foreign = copy.ModelBundle("p", 0.4, ("age",), ("sex",))
        assert type(foreign) is not ModelBundle
        assert loaded_bundle(_Loaded(foreign)) == bundle
    finally:
        del sys.modules["code_model_copy"]
    assert loaded_bundle(_Loaded(None)) is None
    assert loaded_bundle(_Loaded({"format": 2})) is None
    assert loaded_bundle(object()) is None  # not a python_model flavour


META_JSON = {
    "best_params": {"max_depth": 6, "max_features": 0.5, "max_samples": 0.7510895538546418,
                    "min_samples_leaf": 24, "n_estimators": 15},
    "categorical_features": ["department", "diagnosis_group"], "experiment": "idf-readmission",
    "features_md5": "7332fca9061987130505a779fba8a977", "min_precision": 0.25,
    "model_name": "idf-readmission-rf", "model_uri": "models:/idf-readmission-rf/1",
    "numeric_features": ["age", "sex"], "seed": 20240601, "threshold": 0.49225,
    "threshold_bound": "wilson_lower", "threshold_rule": "min_precision", "train_end": "2023-10-01",
    "valid_end": "2024-04-01", "version": "1",
}


def test_meta_round_trip_keeps_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model_meta.json"
    path.write_text(json.dumps(META_JSON, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    before = path.read_bytes()
    meta = read_meta(path)
    assert (meta.train_end, meta.valid_end, meta.version, meta.seed) == (date(2023, 10, 1), date(2024, 4, 1), "1",
                                                                         20240601)
    assert meta.numeric_features == ("age", "sex")
    write_meta(path, meta)
    assert path.read_bytes() == before
    assert read_meta(path) == meta
    assert replace(meta, version="2").to_json() == {**META_JSON, "version": "2"}
    older = {k: v for k, v in META_JSON.items() if k != "threshold_bound"}  # written before the bound existed
    path.write_text(json.dumps(older), encoding="utf-8")
    assert read_meta(path).threshold_bound == "point"
    # files written before the lock was made reproducible still held the run id and git revision
    path.write_text(json.dumps({**META_JSON, "run_id": "d5f7ab33", "git_commit": "abc"}), encoding="utf-8")
    assert read_meta(path) == meta
    assert not {"run_id", "git_commit"} & set(meta.to_json())


def test_meta_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "model_meta.json"
    path.write_text(json.dumps({k: v for k, v in META_JSON.items() if k not in ("seed", "model_uri")}))
    with pytest.raises(ModelMetaError, match=r"missing key.*model_uri, .*seed"):
        read_meta(path)
    path.write_text(json.dumps({**META_JSON, "train_end": "October"}))
    with pytest.raises(ModelMetaError, match=r"model_meta\.json: Invalid isoformat string: 'October'"):
        read_meta(path)
    path.write_text(json.dumps({**META_JSON, "seed": "not a seed"}))
    with pytest.raises(ModelMetaError, match=r"model_meta\.json: invalid literal for int"):
        read_meta(path)
    path.write_text('{"model_name": ')
    with pytest.raises(ModelMetaError, match=r"model_meta\.json: not valid JSON"):
        read_meta(path)
    path.write_text("[1, 2]")
    with pytest.raises(ModelMetaError, match=r"model_meta\.json: expected a JSON object, found list"):
        read_meta(path)
    with pytest.raises(MissingInputError, match=r"absent\.json: model metadata not found \(run the train stage"):
        read_meta(tmp_path / "absent.json")
    assert issubclass(ModelMetaError, PipelineInputError)
    assert isinstance(ModelMeta.from_json(META_JSON), ModelMeta)


def test_a_swallowed_interrupt_stops_registering(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipelines import interrupts

    logged: list[object] = []
    monkeypatch.setattr(mlflow.pyfunc, "log_model", lambda *a, **k: logged.append(k))
    monkeypatch.setattr(interrupts, "_pending", [signal.SIGTERM])  # a SIGTERM Python swallowed earlier
    with pytest.raises(interrupts.Terminated):
        register(tmp_path / "model.joblib", cast(Refit, None), cast(Windows, None), _tp(), cast(Tracking, None), "r")
    assert logged == []  # no version registered
