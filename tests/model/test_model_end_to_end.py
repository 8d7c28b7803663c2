"""train + evaluate end to end on a tiny synthetic mart, with its own MLflow store in tmp_path.

One module-scoped training run serves the output, registry and behaviour tests; the
determinism and failure-mode tests train again (small budgets).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest

from pipelines import contracts
from pipelines.config import Params, Paths
from pipelines.evaluate import run_evaluate
from pipelines.model import data as fdata
from pipelines.model import tracking
from pipelines.model.artifacts import load_model, read_meta
from pipelines.model.pyfunc_model import predict_frame
from pipelines.model.thresholds import RULE_F2, ThresholdError, choose_threshold
from pipelines.train import run_train
from tests.support.feature_fixtures import make_features, write_fixture

REMOTE_SCRIPT = re.compile(r"<script[^>]*src=[\"']https?://")
ROWS = 4000
TRAIN: dict[str, Any] = {
    "n_trials": 3,
    "search": {"n_estimators": [15, 30], "max_depth": [4, 10], "min_samples_leaf": [10, 60]},
}


def _params(**train: Any) -> Params:
    return Params.model_validate(
        {"train": {**TRAIN, **train}, "evaluate": {"permutation_repeats": 2, "png": True}}
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("project")
    write_fixture(root, n_rows=ROWS, seed=11)
    paths = Paths(root)
    params = _params()
    train = run_train(paths, params)
    evaluation = run_evaluate(paths, params)
    bundle, meta = load_model(paths)
    split = fdata.temporal_split(fdata.load_features(paths), meta.train_end, meta.valid_end,
                                 gap_days=Params().warehouse.readmission_window_days)
    return {"paths": paths, "params": params, "train": train, "evaluate": evaluation, "bundle": bundle,
            "meta": meta, "split": split}


def date_of(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


# ---- outputs -------------------------------------------------------------------------------

def test_train_outputs(project: dict[str, Any]) -> None:
    paths: Paths = project["paths"]
    train = json.loads((paths.metrics / "train.json").read_text())
    assert train == {k: v for k, v in project["train"].items() if k not in ("duration_s", "timings")}
    assert "duration_s" not in train  # timings are printed, not written: same inputs, same bytes
    assert train["n_trials_completed"] + train["n_trials_pruned"] == 3
    assert 0 < train["best_cv_objective"] <= 1
    assert set(train["valid"]) >= {"recall", "precision", "f2", "pr_auc", "roc_auc", "brier"}
    meta = project["meta"]
    assert meta.threshold == train["threshold"]
    assert [*meta.numeric_features, *meta.categorical_features] == fdata.FEATURES
    assert (paths.models / "model.joblib").exists()


def test_threshold_is_the_validation_rule(project: dict[str, Any]) -> None:
    split, bundle, meta = project["split"], project["bundle"], project["meta"]
    p_valid = predict_frame(bundle, fdata.to_model_input(split.valid))["probability"].to_numpy()
    assert meta.threshold_bound == "wilson_lower"  # the default: the precision's lower bound meets the floor
    point = choose_threshold(fdata.labels(split.valid), p_valid, meta.min_precision, "f2", "wilson_lower")
    assert point.threshold == pytest.approx(bundle.threshold)
    assert point.rule == meta.threshold_rule
    if point.rule == "min_precision":
        assert project["train"]["valid"]["precision"] >= meta.min_precision


def test_evaluate_outputs(project: dict[str, Any]) -> None:
    paths: Paths = project["paths"]
    result = json.loads((paths.metrics / "evaluate.json").read_text())
    assert set(result) >= {"rf", "lace", "logreg", "oracle", "gap", "permutation_importance"}
    rf, oracle = result["rf"], result["oracle"]
    assert rf["n"] == project["split"].test.height
    assert rf["tp"] + rf["fn"] == round(rf["prevalence"] * rf["n"])
    assert oracle["coverage"] == 1.0
    assert result["gap"]["roc_auc_oracle_minus_rf"] == pytest.approx(oracle["roc_auc"] - rf["roc_auc"], abs=1e-5)
    # the planted signal is learnable: every probability model beats chance, the oracle is the best
    for model in ("rf", "logreg", "oracle"):
        assert result[model]["roc_auc"] > 0.6
    assert oracle["roc_auc"] >= max(rf["roc_auc"], result["logreg"]["roc_auc"]) - 0.02
    # importance is on the raw columns; age and cost carry the planted signal
    importance = result["permutation_importance"]
    assert set(importance) == set(fdata.FEATURES)
    top = sorted(importance, key=importance.__getitem__, reverse=True)[:3]
    assert {"age", "stay_cost"} & set(top)
    for name in ("pr_curve", "roc_curve", "calibration"):
        with (paths.reports / "plots" / f"{name}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        counts = pd.Series([r["model"] for r in rows]).value_counts()
        assert counts.max() <= 200
        assert {"rf", "logreg"} <= set(counts.index)
    figures = paths.reports / "figures"
    for name in ("confusion_matrix", "classification_report", "pr_curve", "roc_curve", "calibration",
                 "permutation_importance"):
        page = (figures / f"{name}.html").read_text()
        assert 'src="plotly.min.js"' in page
        assert not REMOTE_SCRIPT.search(page)
    assert (figures / "plotly.min.js").exists()
    page = (figures / "evaluation.html").read_text()
    assert not REMOTE_SCRIPT.search(page)
    assert page.count("Plotly.newPlot") >= 6


def test_oracle_uses_one_truth_row_per_episode(project: dict[str, Any]) -> None:
    paths: Paths = project["paths"]
    from pipelines.evaluate import oracle_probabilities

    test = project["split"].test
    probabilities = oracle_probabilities(paths.truth / contracts.TRUTH_STAYS_FILE, test[fdata.KEY])
    assert probabilities.shape == (test.height,)
    assert not np.isnan(probabilities).any()


# ---- MLflow: runs, registered version, loading back ----------------------------------------

def test_runs_and_registered_version(project: dict[str, Any]) -> None:
    paths: Paths = project["paths"]
    meta = project["meta"]
    client = tracking.connect(paths)
    assert (paths.mlruns / "mlflow.db").exists()
    run_id = client.get_model_version(meta.model_name, meta.version).run_id
    parent = client.get_run(run_id)
    assert parent.data.metrics["best_cv_recall_at_floor"] == project["train"]["best_cv_objective"]
    assert "test_rf_roc_auc" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(children) == 3
    assert all("fold0_recall_at_floor" in c.data.metrics for c in children)
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert "evaluation/evaluation.html" in artifacts
    assert any(a.path == "optuna" for a in client.list_artifacts(run_id))
    experiment = client.get_experiment(parent.info.experiment_id)
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(paths.mlruns)

    version = client.get_model_version(meta.model_name, meta.version)
    tags = version.tags
    assert tags["features_md5"] == fdata.file_md5(fdata.features_path(paths)) == meta.features_md5
    assert tags["git_commit"]
    assert float(tags["threshold"]) == pytest.approx(meta.threshold)
    assert float(tags["min_precision"]) == meta.min_precision
    assert float(tags["valid_recall"]) == pytest.approx(project["train"]["valid"]["recall"])
    assert float(tags["valid_precision"]) == pytest.approx(project["train"]["valid"]["precision"])
    assert tags["test_roc_auc"]


def test_registered_model_loads_and_predicts_like_in_process(project: dict[str, Any]) -> None:
    paths: Paths = project["paths"]
    meta, bundle, split = project["meta"], project["bundle"], project["split"]
    tracking.connect(paths)
    loaded = mlflow.pyfunc.load_model(f"models:/{meta.model_name}/{meta.version}")
    served = loaded.predict(fdata.to_serving_input(split.test))
    local = predict_frame(bundle, fdata.to_model_input(split.test))
    assert list(served.columns) == ["probability", "high_risk"]
    np.testing.assert_allclose(served["probability"].to_numpy(), local["probability"].to_numpy(), rtol=0, atol=1e-12)
    assert (served["high_risk"].to_numpy() == local["high_risk"].to_numpy()).all()
    assert ((local["probability"] >= bundle.threshold).astype(int) == local["high_risk"]).all()
    assert bundle.pipeline.named_steps["rf"].n_jobs == 1  # saved for serving

    # JSON-like records: Python ints, a null or an int for the nullable column, an extra key
    records = split.test.head(3).drop(fdata.LABEL, fdata.DATE).to_dicts()
    records[0]["days_since_last_discharge"] = None
    records[1]["days_since_last_discharge"] = 12
    out = loaded.predict(pd.DataFrame(records))
    np.testing.assert_allclose(
        out["probability"].to_numpy(),
        predict_frame(bundle, pd.DataFrame(records))["probability"].to_numpy(), atol=1e-12)
    # the signature refuses what the contract does not allow
    with pytest.raises(mlflow.exceptions.MlflowException, match="age"):
        loaded.predict(pd.DataFrame(records).assign(age="old"))


# ---- behaviour of the trained model --------------------------------------------------------

def _mean_risk(project: dict[str, Any], frame: pd.DataFrame) -> float:
    return float(predict_frame(project["bundle"], frame)["probability"].mean())


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("age", lambda s: s + 15),
        ("stay_cost", lambda s: s * 3),
        ("prior_stays_12m", lambda s: s + 4),
    ],
    ids=["older", "costlier", "more-prior-stays"],
)
def test_directional(project: dict[str, Any], column: str, change: Any) -> None:
    x = fdata.to_model_input(project["split"].test)
    changed = x.copy()
    changed[column] = change(changed[column])
    if column == "prior_stays_12m":
        changed["prior_stays_6m"] = changed["prior_stays_6m"] + 2
    assert _mean_risk(project, changed) > _mean_risk(project, x)


def test_invariant_to_stay_id(project: dict[str, Any]) -> None:
    test = project["split"].test
    x = test.to_pandas()
    renamed = x.assign(stay_id=[f"OTHER-{i}" for i in range(len(x))])
    shuffled_ids = x.assign(stay_id=x["stay_id"].sample(frac=1.0, random_state=0).to_numpy())
    base = predict_frame(project["bundle"], x)["probability"].to_numpy()
    for variant in (renamed, shuffled_ids):
        np.testing.assert_array_equal(predict_frame(project["bundle"], variant)["probability"].to_numpy(), base)


# ---- determinism and failure modes ---------------------------------------------------------

def test_same_params_same_model(project: dict[str, Any], tmp_path: Path) -> None:
    write_fixture(tmp_path, n_rows=ROWS, seed=11)
    again = run_train(Paths(tmp_path), project["params"])
    assert again["best_params"] == project["train"]["best_params"]
    assert again["threshold"] == project["train"]["threshold"]
    bundle, _ = load_model(Paths(tmp_path))
    x = fdata.to_model_input(project["split"].test)
    np.testing.assert_array_equal(predict_frame(bundle, x)["probability"].to_numpy(),
                                  predict_frame(project["bundle"], x)["probability"].to_numpy())


def test_leaky_mart_stops_training(tmp_path: Path) -> None:
    features, _ = make_features(n_rows=600, seed=2)
    leaky = features.with_columns(readmission_date=pl.col("discharge_date") + pl.duration(days=9))
    target = fdata.features_path(Paths(tmp_path))
    target.parent.mkdir(parents=True)
    leaky.write_parquet(target)
    with pytest.raises(fdata.LeakageError, match="readmission_date"):
        run_train(Paths(tmp_path), _params())
    assert not (tmp_path / "mlruns").exists()


def _anti_signal_validation(root: Path) -> None:
    """Relabel the validation window so that only the young are readmitted: the model, trained on
    the planted signal (older = riskier), ranks negatives first there, so no threshold can reach a
    high precision floor."""
    path = fdata.features_path(Paths(root))
    frame = pl.read_parquet(path)
    in_valid = pl.col("discharge_date").is_between(date_of("2023-10-01"), date_of("2024-04-01"), closed="left")
    relabelled = frame.with_columns(
        pl.when(in_valid).then((pl.col("age") < 45).cast(pl.Int32)).otherwise(pl.col(fdata.LABEL))
        .alias(fdata.LABEL)
    )
    relabelled.write_parquet(path)


def test_unreachable_precision_floor(tmp_path: Path) -> None:
    write_fixture(tmp_path, n_rows=2500, seed=5)
    _anti_signal_validation(tmp_path)
    with pytest.raises(ThresholdError, match=r"precision >= 0\.9"):
        run_train(Paths(tmp_path), _params(n_trials=1, min_precision=0.9, threshold_fallback="error"))
    assert not (tmp_path / "models" / "model_meta.json").exists()
    result = run_train(Paths(tmp_path), _params(n_trials=1, min_precision=0.9))
    assert result["threshold_rule"] == RULE_F2
    assert result["valid"]["precision"] < 0.9
    client = tracking.connect(Paths(tmp_path))
    meta = read_meta(tmp_path / "models" / "model_meta.json")
    assert meta.threshold_rule == RULE_F2
    assert client.get_model_version(meta.model_name, meta.version).tags["threshold_rule"] == RULE_F2
