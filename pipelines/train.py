"""Train stage: Optuna-tuned Random Forest for 30-day readmission, tracked and registered in MLflow.

Reads   data/features/ml_readmission_features.parquet (exactly contracts.FEATURE_SCHEMA)
Writes  models/model.joblib       the fitted sklearn pipeline + threshold (joblib dict, see
                                  pipelines/model/pyfunc_model.py), loadable without MLflow
        models/model_meta.json    threshold, registered version, run id, features, split dates
        reports/metrics/train.json
        mlruns/                   one parent run per study (params, best value, Optuna plots, the
                                  pyfunc model), one nested run per trial; a new version of the
                                  registered model `train.model_name`, with tags

Method
1. Leakage guard + contract check, then a temporal split on discharge_date:
   train < train_end <= valid < valid_end <= test (test is left to `evaluate`).
2. Optuna (TPE, seeded, one trial at a time) tunes RandomForestClassifier(class_weight=
   'balanced'). A trial's value is the mean over `cv_folds` expanding, time-ordered folds inside
   the training window of the recall at the highest-recall threshold whose precision is
   >= min_precision; a fold where no threshold reaches the floor scores 0 (logged as a warning
   and as the fold's `floor_met` = 0). Folds leave a `cv_gap_days` gap before validation. With
   `pruning`, MedianPruner sees the running mean after each fold.
   Tuning runs on at most `tune_max_rows` rows of the training window: a seeded sample
   stratified on (calendar month, label), in date order, so the folds and their gap are as above
   and the cost of a trial does not grow with the number of index stays.
3. Every forest (folds, learning curve, refit) draws min(int(max_samples x rows),
   `max_samples_rows`) rows per tree (pipelines/model/scaling.py).
4. Learning curve: the best params fitted on `learning_curve_points` log-spaced, stratified
   samples of the training window and scored on the validation window (MLflow metrics
   lc_* with step = rows, learning_curve.csv and .html under learning_curve/).
5. The best params are refit on the whole training window. The forest's score is calibrated on
   the validation window (`calibration`: Platt scaling on the logit by default; the class-balanced
   forest's raw score overstates risk about twofold), and the operating threshold is chosen on
   the calibrated validation probabilities by the same rule (fallback: max-F2 threshold, or an
   error, per `threshold_fallback`; see pipelines/model/thresholds.py). The calibration map is
   part of the bundle, so the served and batch probability is the calibrated one.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
from sklearn.metrics import average_precision_score, roc_auc_score

from pipelines import atomic, contracts, interrupts, metrics_io
from pipelines.config import Params, Paths, SearchSpace, TrainParams
from pipelines.errors import PipelineInputError
from pipelines.figures.export import combined_html
from pipelines.metrics_io import DIGITS, rounded
from pipelines.model import data as fdata
from pipelines.model import scaling, tracking
from pipelines.model.artifacts import (
    META_FILE,
    MODEL_FILE,
    ModelBundle,
    ModelMeta,
    load_model,
    write_bundle,
    write_meta,
)
from pipelines.model.calibration import fit_calibration
from pipelines.model.metrics import calibration_metrics, probability_metrics
from pipelines.model.preprocessing import forest_pipeline, set_forest_jobs
from pipelines.model.pyfunc_model import BUNDLE_ARTIFACT
from pipelines.model.thresholds import OperatingPoint, ThresholdError, choose_threshold, recall_at_precision

log = logging.getLogger(__name__)

PYFUNC_CODE = Path(__file__).parent / "model" / "pyfunc_model.py"
__all__ = ["META_FILE", "MODEL_FILE", "load_model", "probability_metrics", "run_train"]





def train_seed(params: Params, tp: TrainParams) -> int:
    return tp.seed if tp.seed is not None else params.seed


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", *space.n_estimators),
        "max_depth": trial.suggest_int("max_depth", *space.max_depth),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", *space.min_samples_leaf, log=True),
        "max_features": trial.suggest_categorical("max_features", list(space.max_features)),
        "max_samples": trial.suggest_float("max_samples", *space.max_samples),
    }


class _Objective:
    """Mean over time-ordered folds of the recall at the precision floor; one nested run per trial."""

    def __init__(self, tp: TrainParams, seed: int, x: pd.DataFrame, y: np.ndarray,
                 folds: list[tuple[np.ndarray, np.ndarray]], experiment_id: str) -> None:
        self.tp, self.seed, self.x, self.y, self.folds = tp, seed, x, y, folds
        self.experiment_id = experiment_id

    def fold_score(self, hp: dict[str, Any], k: int) -> dict[str, float]:
        train_idx, valid_idx = self.folds[k]
        forest_hp = scaling.capped_forest_params(hp, train_idx.size, self.tp.max_samples_rows)
        model = forest_pipeline(forest_hp, self.seed, self.tp.n_jobs)
        model.fit(self.x.iloc[train_idx], self.y[train_idx])
        p = scaling.predict_positive(model, self.x.iloc[valid_idx])
        y = self.y[valid_idx]
        try:
            point = recall_at_precision(y, p, self.tp.min_precision)
        except ThresholdError:  # no positive in the fold
            point = None
        if point is None:
            log.warning("fold %d: no threshold reaches precision >= %.3f; fold objective = 0", k, self.tp.min_precision)
        return {
            "recall_at_floor": point.recall if point else 0.0,
            "precision": point.precision if point else math.nan,
            "threshold": point.threshold if point else math.nan,
            "floor_met": 1.0 if point else 0.0,
            "pr_auc": float(average_precision_score(y, p)) if y.any() else math.nan,
        }

    def __call__(self, trial: optuna.Trial) -> float:
        hp = suggest(trial, self.tp.search)
        scores: list[float] = []
        precisions: list[float] = []
        pr_aucs: list[float] = []
        pruned = False
        with mlflow.start_run(run_name=f"trial-{trial.number:03d}", nested=True, experiment_id=self.experiment_id):
            mlflow.log_params(hp)
            mlflow.set_tag("optuna_trial", str(trial.number))
            for k in range(len(self.folds)):
                fold = self.fold_score(hp, k)
                mlflow.log_metrics({f"fold{k}_{name}": rounded(v, DIGITS) for name, v in fold.items()
                                    if not math.isnan(v)})
                scores.append(fold["recall_at_floor"])
                precisions.append(fold["precision"])
                pr_aucs.append(fold["pr_auc"])
                trial.report(float(np.mean(scores)), step=k)
                if self.tp.pruning and trial.should_prune():
                    pruned = True
                    break
            value = float(np.mean(scores))
            mlflow.log_metrics({
                "cv_recall_at_floor": rounded(value, DIGITS),
                "cv_precision": (rounded(float(np.nanmean(precisions)), DIGITS)
                                 if not np.all(np.isnan(precisions)) else 0.0),
                "cv_pr_auc": rounded(float(np.nanmean(pr_aucs)), DIGITS) if not np.all(np.isnan(pr_aucs)) else 0.0,
                "folds_done": len(scores),
            })
            mlflow.set_tag("optuna_state", "PRUNED" if pruned else "COMPLETE")
        trial.set_user_attr("fold_recall_at_floor", [rounded(s, DIGITS) for s in scores])
        log.info("trial %d %s: %s -> %.4f", trial.number, "pruned" if pruned else "done", hp, value)
        if pruned:
            raise optuna.TrialPruned()
        return value


def _study_figures(study: optuna.Study, seed: int) -> dict[str, Any]:
    """The Optuna plots that can be drawn for this study (some need several complete trials)."""
    from optuna import visualization as vis
    from optuna.importance import FanovaImportanceEvaluator

    builders: dict[str, Callable[[], Any]] = {
        "optimization history": lambda: vis.plot_optimization_history(study),
        "hyper-parameter importance": lambda: vis.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed)),
        "parallel coordinates": lambda: vis.plot_parallel_coordinate(study),
        "slices": lambda: vis.plot_slice(study),
        "intermediate values (running mean per fold)": lambda: vis.plot_intermediate_values(study),
    }
    figures = {}
    for title, build in builders.items():
        try:
            fig = build()
        except Exception as exc:  # too few trials for a plot: skip it, keep the others
            log.info("optuna plot '%s' skipped: %s", title, exc)
            continue
        fig.update_layout(title=title)
        figures[title] = fig
    return figures


def learning_curve(tp: TrainParams, seed: int, hp: dict[str, Any], x_train: pd.DataFrame, y_train: np.ndarray,
                   train_dates: np.ndarray, x_valid: pd.DataFrame, y_valid: np.ndarray) -> list[dict[str, float]]:
    """Validation metrics of the best params fitted on log-spaced, stratified samples of the training
    window: where more rows stop helping. Each fit's bootstrap is capped, so the cost is bounded."""
    n_max = min(len(x_train), tp.learning_curve_max_rows or len(x_train))
    sizes = scaling.learning_curve_sizes(n_max, tp.learning_curve_points, tp.learning_curve_min_rows)
    curve: list[dict[str, float]] = []
    for size in sizes:
        started = time.perf_counter()
        idx = scaling.time_stratified_sample(train_dates, y_train, size, seed)
        forest_hp = scaling.capped_forest_params(hp, idx.size, tp.max_samples_rows)
        model = forest_pipeline(forest_hp, seed, tp.n_jobs)
        model.fit(x_train.iloc[idx], y_train[idx])
        p = scaling.predict_positive(model, x_valid)
        try:
            point = recall_at_precision(y_valid, p, tp.min_precision)
        except ThresholdError:
            point = None
        curve.append({
            "rows": int(idx.size), "bootstrap_rows": int(forest_hp["max_samples"]),
            "roc_auc": rounded(roc_auc_score(y_valid, p), DIGITS),
            "pr_auc": rounded(average_precision_score(y_valid, p), DIGITS),
            "recall_at_floor": rounded(point.recall, DIGITS) if point else 0.0,
            "seconds": round(time.perf_counter() - started, 2),
        })
        log.info("learning curve: %s", curve[-1])
    return curve


def log_learning_curve(curve: list[dict[str, float]], tolerance: float) -> int | None:
    """lc_* metrics with step = training rows, a CSV and a plot under learning_curve/; the plateau size."""
    import plotly.graph_objects as go

    rows = [int(c["rows"]) for c in curve]
    for c in curve:
        mlflow.log_metrics({f"lc_{k}": c[k] for k in ("roc_auc", "pr_auc", "recall_at_floor")}, step=int(c["rows"]))
    plateau = scaling.plateau_rows(rows, [c["roc_auc"] for c in curve], tolerance)
    if plateau is not None:
        mlflow.log_metric("lc_plateau_rows", plateau)
    fig = go.Figure()
    for key, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("recall_at_floor", "recall at precision floor")):
        fig.add_trace(go.Scatter(x=rows, y=[c[key] for c in curve], mode="lines+markers", name=label))
    if plateau is not None:
        fig.add_vline(x=plateau, line_dash="dot", annotation_text=f"plateau ({plateau:,} rows)")
    fig.update_layout(title="Learning curve: validation window vs training rows (best params)",
                      xaxis={"type": "log", "title": "training rows"}, yaxis={"title": "validation metric"})
    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame(curve).to_csv(Path(tmp) / "learning_curve.csv", index=False)
        page = combined_html({"learning curve": fig}, "Learning curve")
        (Path(tmp) / "learning_curve.html").write_text(page, encoding="utf-8")
        mlflow.log_artifacts(tmp, artifact_path="learning_curve")
    return plateau


def model_signature() -> ModelSignature:
    """Outputs only. The served pyfunc checks its input itself (pyfunc_model.check_input: missing,
    extra and label columns, types, nulls, with 400 and the column's name); an input schema here
    would make MLflow drop undeclared columns and cast 65.5 or true to integers before those
    checks run. The input contract is documented by the logged input example."""
    outputs: list[ColSpec | TensorSpec] = [ColSpec("double", "probability"), ColSpec("long", "high_risk")]
    # `reasons: k` adds k reason columns (pyfunc_model.reason_columns); MLflow drops undeclared params
    params = ParamSchema([ParamSpec("reasons", "long", 0)])
    return ModelSignature(inputs=None, outputs=Schema(outputs), params=params)


def input_example(x_train: pd.DataFrame) -> pd.DataFrame:
    """Two made-up rows (medians / most frequent values), never a real patient's row."""
    row: dict[str, Any] = {}
    for name, dtype in contracts.NUMERIC_FEATURES.items():
        median = float(x_train[name].median())
        row[name] = round(median) if dtype.is_integer() else round(median, 2)
    row.update({c: str(x_train[c].mode(dropna=True).iloc[0]) for c in fdata.CATEGORICAL})
    second = dict(row, **dict.fromkeys(fdata.NULLABLE_NUMERIC))
    return pd.DataFrame([row, second])


def _pip_requirements() -> list[str]:
    names = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "joblib")
    return [f"{n}=={metadata.version(n)}" for n in names]


# ---- the stage as steps: data -> tuning sample -> study -> refit -> register -> outputs -----------

@dataclass(frozen=True)
class Windows:
    """The training and validation windows as model input (the test window is left to `evaluate`)."""

    x_train: pd.DataFrame
    y_train: np.ndarray
    train_dates: np.ndarray
    x_valid: pd.DataFrame
    y_valid: np.ndarray
    rows: dict[str, int]  # train / valid / test sizes, the label gap and the rows it dropped
    features_md5: str


@dataclass(frozen=True)
class TuningSample:
    """Optuna's rows: positions in the training window (date order) and the CV folds over them."""

    index: np.ndarray
    x: pd.DataFrame
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    fold_starts: list[date]


@dataclass(frozen=True)
class StudyResult:
    study: optuna.Study
    best_params: dict[str, Any]
    best_value: float
    n_complete: int
    n_pruned: int
    timeout_hit: bool
    seconds: float

    @property
    def n_run(self) -> int:
        return len(self.study.trials)


@dataclass(frozen=True)
class Refit:
    """The best params fitted on the whole training window, at the validation threshold."""

    bundle: ModelBundle
    point: OperatingPoint
    valid_metrics: dict[str, float]
    bootstrap_rows: int
    seconds: float
    valid_uncalibrated: dict[str, Any]  # brier, calibration slope / intercept of the raw forest score


@dataclass(frozen=True)
class Tracking:
    client: MlflowClient
    experiment_id: str
    git_commit: str


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str
    tags: dict[str, str]  # set on the registered version


def load_windows(paths: Paths, tp: TrainParams, gap_days: int) -> Windows:
    """`gap_days`: the readmission window (warehouse.readmission_window_days) kept clear before
    the validation and test windows (fdata.temporal_split)."""
    frame = fdata.load_features(paths)
    split = fdata.temporal_split(frame, tp.train_end, tp.valid_end, gap_days=gap_days)
    log.info("split rows %s (train < %s - %d days, valid < %s - %d days <= test); label gap dropped %s",
             split.sizes(), tp.train_end, gap_days, tp.valid_end, gap_days, split.gap_rows())
    return Windows(
        x_train=fdata.to_model_input(split.train), y_train=fdata.labels(split.train),
        train_dates=split.train[fdata.DATE].to_numpy(),
        x_valid=fdata.to_model_input(split.valid), y_valid=fdata.labels(split.valid),
        rows={**split.sizes(), "gap_days": gap_days,
              **{f"gap_dropped_{k}": v for k, v in split.gap_rows().items()}},
        features_md5=fdata.file_md5(fdata.features_path(paths)),
    )


def tuning_sample(windows: Windows, tp: TrainParams, seed: int) -> TuningSample:
    """A bounded, seeded sample of the training window (all of it when small), still in date order."""
    index = scaling.time_stratified_sample(windows.train_dates, windows.y_train, tp.tune_max_rows, seed)
    dates = windows.train_dates[index]
    log.info("tuning on %d of %d training rows (tune_max_rows %d)", index.size, len(windows.x_train), tp.tune_max_rows)
    return TuningSample(index=index, x=windows.x_train.iloc[index], y=windows.y_train[index],
                        folds=fdata.time_folds(dates, tp.cv_folds, tp.cv_gap_days),
                        fold_starts=fdata.cut_dates(dates, tp.cv_folds))


def open_tracking(paths: Paths, tp: TrainParams) -> Tracking:
    client = tracking.connect(paths)
    experiment_id = tracking.ensure_experiment(client, paths, tp.experiment)
    stale = tracking.mark_stale_runs(client, experiment_id)
    if stale:
        log.warning("train: %d run(s) of a killed train marked FAILED: %s", len(stale), ", ".join(stale))
    return Tracking(client, experiment_id, tracking.git_commit(paths.root))


def log_setup(tp: TrainParams, seed: int, windows: Windows, sample: TuningSample) -> None:
    """The parent run's params: the budget, the windows, the folds and the search space."""
    mlflow.log_params({
        "seed": seed, "n_trials": tp.n_trials, "timeout_s": tp.timeout_s, "cv_folds": tp.cv_folds,
        "cv_gap_days": tp.cv_gap_days, "min_precision": tp.min_precision, "threshold_bound": tp.threshold_bound,
        "threshold_fallback": tp.threshold_fallback, "pruning": tp.pruning,
        "train_end": tp.train_end.isoformat(), "valid_end": tp.valid_end.isoformat(),
        "cv_fold_starts": ",".join(d.isoformat() for d in sample.fold_starts),
        "n_train": windows.rows["train"], "n_valid": windows.rows["valid"], "n_test": windows.rows["test"],
        "n_tune": int(sample.index.size), "tune_max_rows": tp.tune_max_rows,
        "max_samples_rows": tp.max_samples_rows, "learning_curve_points": tp.learning_curve_points,
        **{f"space_{k}": str(list(v)) for k, v in tp.search.model_dump().items()},
    })


class TuningTimeoutError(PipelineInputError):
    """train.timeout_s stopped tuning before train.n_trials (and train.on_timeout is "error")."""


def run_study(sample: TuningSample, tp: TrainParams, seed: int, experiment_id: str) -> StudyResult:
    """The seeded TPE study, one trial at a time (each a nested run of the active MLflow run)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=tp.pruning_startup_trials, n_warmup_steps=tp.pruning_warmup_folds)
        if tp.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner,
                                study_name=f"{tp.model_name}-rf-recall-at-precision")
    objective = _Objective(tp, seed, sample.x, sample.y, sample.folds, experiment_id)
    clock = time.perf_counter()
    study.optimize(objective, n_trials=tp.n_trials, timeout=tp.timeout_s, n_jobs=1, gc_after_trial=False)
    seconds = round(time.perf_counter() - clock, 1)

    states = [t.state for t in study.trials]
    n_complete = states.count(optuna.trial.TrialState.COMPLETE)
    if n_complete == 0:
        raise RuntimeError("no Optuna trial completed (raise train.timeout_s)")
    timeout_hit = len(study.trials) < tp.n_trials
    if timeout_hit and tp.on_timeout == "error":
        raise TuningTimeoutError(
            f"timeout_s {tp.timeout_s:g} reached after {len(study.trials)} of {tp.n_trials} trials, so the "
            "tuned model would depend on how busy the machine was; raise train.timeout_s, lower train.n_trials, "
            "or set train.on_timeout: keep to accept it (train.json then says timeout_hit)")
    if timeout_hit:
        log.warning("timeout reached after %d of %d trials: the result depends on machine speed "
                    "(train.on_timeout: keep)", len(study.trials), tp.n_trials)
    best = study.best_trial
    return StudyResult(study=study, best_params=dict(best.params), best_value=best.value or 0.0,
                       n_complete=n_complete, n_pruned=states.count(optuna.trial.TrialState.PRUNED),
                       timeout_hit=timeout_hit, seconds=seconds)


def log_study(result: StudyResult, tp: TrainParams, seed: int) -> None:
    """Best params and counts on the parent run; the Optuna plots and trials table when asked."""
    study = result.study
    mlflow.log_params({f"best_{k}": v for k, v in result.best_params.items()})
    mlflow.log_metrics({"best_cv_recall_at_floor": rounded(result.best_value, DIGITS),
                        "trials_complete": result.n_complete, "trials_pruned": result.n_pruned,
                        "best_trial": study.best_trial.number})
    if not tp.optuna_plots:
        return
    with tempfile.TemporaryDirectory() as tmp:
        figures = _study_figures(study, seed)
        if figures:
            page = combined_html(figures, f"Optuna study {study.study_name}")
            (Path(tmp) / "optuna_study.html").write_text(page, encoding="utf-8")
        trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
        trials["duration"] = trials["duration"].dt.total_seconds().round(3)
        trials.to_csv(Path(tmp) / "optuna_trials.csv", index=False)
        mlflow.log_artifacts(tmp, artifact_path="optuna")


def learning_curve_step(windows: Windows, tp: TrainParams, seed: int, hp: dict[str, Any]) -> int | None:
    """The learning curve of the best params, logged on the active run; its plateau size (None: off)."""
    if not tp.learning_curve_points:
        return None
    curve = learning_curve(tp, seed, hp, windows.x_train, windows.y_train, windows.train_dates,
                           windows.x_valid, windows.y_valid)
    return log_learning_curve(curve, tp.learning_curve_tolerance)


def refit(windows: Windows, tp: TrainParams, seed: int, best_params: dict[str, Any]) -> Refit:
    """Refit on the whole training window (bootstrap capped); operating threshold on validation."""
    clock = time.perf_counter()
    forest_params = scaling.capped_forest_params(best_params, len(windows.x_train), tp.max_samples_rows)
    pipeline = forest_pipeline(forest_params, seed, tp.n_jobs)
    pipeline.fit(windows.x_train, windows.y_train)
    set_forest_jobs(pipeline, 1)  # serving: single rows, no thread pool; and the same bits below
    score_valid = scaling.predict_positive(pipeline, windows.x_valid, threads=tp.n_jobs)
    calibration = fit_calibration(tp.calibration, windows.y_valid, score_valid)
    p_valid = calibration.apply(score_valid)  # the threshold is on the served (calibrated) scale
    seconds = round(time.perf_counter() - clock, 1)
    point = choose_threshold(windows.y_valid, p_valid, tp.min_precision, tp.threshold_fallback, tp.threshold_bound)
    if point.rule != "min_precision":
        log.warning("validation: no threshold reaches precision >= %.3f; using the max-F2 threshold %.4f",
                    tp.min_precision, point.threshold)
    valid_metrics = probability_metrics(windows.y_valid, p_valid, point.threshold)
    bundle = ModelBundle(pipeline=pipeline, threshold=float(point.threshold),
                         numeric=tuple(fdata.NUMERIC), categorical=tuple(fdata.CATEGORICAL), calibration=calibration)
    return Refit(bundle=bundle, point=point, valid_metrics=valid_metrics,
                 bootstrap_rows=int(forest_params["max_samples"]), seconds=seconds,
                 valid_uncalibrated=calibration_metrics(windows.y_valid, score_valid))


def log_refit(fitted: Refit, timings: dict[str, float]) -> None:
    mlflow.log_params({"refit_bootstrap_rows": fitted.bootstrap_rows})
    # Timings go to MLflow and the printed summary, never to train.json (same inputs, same bytes).
    mlflow.log_metrics({f"time_{k}": v for k, v in timings.items()})
    mlflow.log_metrics({f"valid_{k}": v for k, v in fitted.valid_metrics.items() if v is not None})
    mlflow.log_metrics({"threshold": rounded(fitted.point.threshold, DIGITS)})
    mlflow.log_metrics({f"valid_uncalibrated_{k}": v for k, v in fitted.valid_uncalibrated.items() if v is not None})
    mlflow.log_params({"calibration": fitted.bundle.calibration.method,
                       **{f"calibration_{k}": v for k, v in fitted.bundle.calibration.to_payload().items()
                          if k in ("slope", "intercept")}})
    mlflow.set_tag("threshold_rule", fitted.point.rule)


def version_tags(fitted: Refit, tp: TrainParams, features_md5: str, git_commit: str, run_id: str) -> dict[str, str]:
    """The registered version's tags: what promote and a reader of the registry need without the files."""
    valid = fitted.valid_metrics
    return {
        "features_md5": features_md5,
        "git_commit": git_commit,
        "threshold": f"{fitted.point.threshold:.6f}",
        "threshold_rule": fitted.point.rule,
        "calibration": fitted.bundle.calibration.method,
        "min_precision": f"{tp.min_precision}",
        "threshold_bound": tp.threshold_bound,
        "valid_recall": f"{valid['recall']:.6f}",
        "valid_precision": f"{valid['precision']:.6f}",
        "valid_roc_auc": f"{valid['roc_auc']:.6f}",
        "train_end": tp.train_end.isoformat(),
        "valid_end": tp.valid_end.isoformat(),
        "run_id": run_id,
        # which DVC experiment (empty in the workspace) and which commit it ran from
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", ""),
        "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", git_commit),
    }


def register(model_file: Path, fitted: Refit, windows: Windows, tp: TrainParams, tracker: Tracking,
             run_id: str) -> Registered:
    """The written bundle logged as the pyfunc on the active run, a new registered version, tagged."""
    interrupts.checkpoint()  # registering a version cannot be undone: not after a swallowed Ctrl-C
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={BUNDLE_ARTIFACT: str(model_file)},
        signature=model_signature(),
        input_example=input_example(windows.x_train),
        registered_model_name=tp.model_name,
        pip_requirements=_pip_requirements(),
    )
    version = str(info.registered_model_version)
    tags = version_tags(fitted, tp, windows.features_md5, tracker.git_commit, run_id)
    for key, value in tags.items():
        tracker.client.set_model_version_tag(tp.model_name, version, key, value)
    return Registered(version=version, run_id=run_id, tags=tags)


def model_meta(tp: TrainParams, seed: int, study: StudyResult, fitted: Refit, registered: Registered,
               windows: Windows) -> ModelMeta:
    return ModelMeta(
        model_name=tp.model_name, version=registered.version,
        model_uri=f"models:/{tp.model_name}/{registered.version}",
        experiment=tp.experiment, threshold=rounded(fitted.point.threshold, DIGITS), threshold_rule=fitted.point.rule,
        min_precision=tp.min_precision, numeric_features=fitted.bundle.numeric,
        categorical_features=fitted.bundle.categorical, train_end=tp.train_end, valid_end=tp.valid_end,
        best_params=study.best_params, seed=seed, features_md5=windows.features_md5,
        threshold_bound=tp.threshold_bound,
    )


def train_summary(tp: TrainParams, study: StudyResult, fitted: Refit, registered: Registered,
                  windows: Windows, sample: TuningSample, plateau: int | None) -> dict[str, Any]:
    """reports/metrics/train.json: no timings (same inputs, same bytes)."""
    return {
        "best_cv_objective": rounded(study.best_value, DIGITS),
        "best_params": study.best_params,
        "n_trials_run": study.n_run,
        "n_trials_completed": study.n_complete,
        "n_trials_pruned": study.n_pruned,
        "timeout_hit": study.timeout_hit,
        "threshold": rounded(fitted.point.threshold, DIGITS),
        "threshold_rule": fitted.point.rule,
        "min_precision": tp.min_precision,
        "valid": fitted.valid_metrics,
        "calibration": {"method": fitted.bundle.calibration.method, "valid_uncalibrated": fitted.valid_uncalibrated},
        "rows": windows.rows,
        "tune_rows": int(sample.index.size),
        "refit_bootstrap_rows": fitted.bootstrap_rows,
        "learning_curve_plateau_rows": plateau,
        "model_version": registered.version,
    }


def write_outputs(paths: Paths, summary: dict[str, Any], tp: TrainParams, features_md5: str) -> None:
    metrics_io.write_json(paths.metrics / "train.json", summary)
    # Same bytes for the same inputs (no version number, no run id): dvc.lock stays reproducible.
    metrics_io.write_json(paths.registry_stamp, {
        "registered_model": tp.model_name, "features_md5": features_md5,
        "why": "train registered its model in this MLflow store; without this file (mlruns/ deleted) "
               "dvc status lists train and dvc repro retrains and registers again"})


def run_train(paths: Paths, params: Params) -> dict[str, Any]:
    started = time.perf_counter()
    tp = params.train
    seed = train_seed(params, tp)
    windows = load_windows(paths, tp, params.warehouse.readmission_window_days)
    sample = tuning_sample(windows, tp, seed)
    tracker = open_tracking(paths, tp)

    # models/ is built in a temporary folder beside it and swapped in once the run is finished:
    # model.joblib and model_meta.json appear together or not at all.
    with atomic.atomic_folder(paths.models) as staging:
        with mlflow.start_run(run_name=f"{tp.model_name}-study", experiment_id=tracker.experiment_id) as parent:
            mlflow.set_tags({"features_md5": windows.features_md5, "git_commit": tracker.git_commit,
                             "stage": "train", **tracking.process_tags()})
            log_setup(tp, seed, windows, sample)
            study = run_study(sample, tp, seed, tracker.experiment_id)
            log_study(study, tp, seed)
            clock = time.perf_counter()
            plateau = learning_curve_step(windows, tp, seed, study.best_params)
            timings = {"tuning_s": study.seconds, "learning_curve_s": round(time.perf_counter() - clock, 1)}
            fitted = refit(windows, tp, seed, study.best_params)
            timings["refit_s"] = fitted.seconds
            log_refit(fitted, timings)
            write_bundle(staging / MODEL_FILE, fitted.bundle)
            registered = register(staging / MODEL_FILE, fitted, windows, tp, tracker, parent.info.run_id)
        write_meta(staging / META_FILE, model_meta(tp, seed, study, fitted, registered, windows))
    summary = train_summary(tp, study, fitted, registered, windows, sample, plateau)
    write_outputs(paths, summary, tp, windows.features_md5)
    log.info("train: version %s, threshold %.4f (%s), valid recall %.3f precision %.3f", registered.version,
             fitted.point.threshold, fitted.point.rule, fitted.valid_metrics["recall"],
             fitted.valid_metrics["precision"])
    return {**summary, "duration_s": round(time.perf_counter() - started, 1), "timings": timings}
