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
5. The best params are refit on the whole training window; the operating threshold is chosen on
   the validation window by the same rule (fallback: max-F2 threshold, or an error, per
   `threshold_fallback`; see pipelines/model/thresholds.py).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from sklearn.metrics import average_precision_score, roc_auc_score

from pipelines import atomic, contracts, interrupts, metrics_io
from pipelines.config import Params, Paths, SearchSpace, TrainParams
from pipelines.figures.export import combined_html
from pipelines.metrics_io import DIGITS, rounded
from pipelines.model import data as fdata
from pipelines.model import scaling, tracking
from pipelines.model.artifacts import META_FILE, MODEL_FILE, load_model
from pipelines.model.metrics import probability_metrics
from pipelines.model.preprocessing import forest_pipeline, set_forest_jobs
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
    return ModelSignature(inputs=None, outputs=Schema(outputs))


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


def run_train(paths: Paths, params: Params) -> dict[str, Any]:
    started = time.perf_counter()
    tp = params.train
    seed = train_seed(params, tp)

    features_file = fdata.features_path(paths)
    frame = fdata.load_features(paths)
    features_md5 = fdata.file_md5(features_file)
    split = fdata.temporal_split(frame, tp.train_end, tp.valid_end)
    log.info("split rows %s (train < %s <= valid < %s <= test)", split.sizes(), tp.train_end, tp.valid_end)

    x_train, y_train = fdata.to_model_input(split.train), fdata.labels(split.train)
    x_valid, y_valid = fdata.to_model_input(split.valid), fdata.labels(split.valid)
    train_dates = split.train[fdata.DATE].to_numpy()
    # Optuna's rows: a bounded, seeded sample of the window (all of it when small), still in date order.
    tune_idx = scaling.time_stratified_sample(train_dates, y_train, tp.tune_max_rows, seed)
    x_tune, y_tune, tune_dates = x_train.iloc[tune_idx], y_train[tune_idx], train_dates[tune_idx]
    folds = fdata.time_folds(tune_dates, tp.cv_folds, tp.cv_gap_days)
    fold_starts = fdata.cut_dates(tune_dates, tp.cv_folds)
    log.info("tuning on %d of %d training rows (tune_max_rows %d)", tune_idx.size, len(x_train), tp.tune_max_rows)

    client = tracking.connect(paths)
    experiment_id = tracking.ensure_experiment(client, paths, tp.experiment)
    stale = tracking.mark_stale_runs(client, experiment_id)
    if stale:
        log.warning("train: %d run(s) of a killed train marked FAILED: %s", len(stale), ", ".join(stale))
    commit = tracking.git_commit(paths.root)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=tp.pruning_startup_trials, n_warmup_steps=tp.pruning_warmup_folds)
        if tp.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner,
                                study_name=f"{tp.model_name}-rf-recall-at-precision")

    # models/ is built in a temporary folder beside it and swapped in once the run is finished:
    # model.joblib and model_meta.json appear together or not at all.
    with atomic.atomic_folder(paths.models) as staging:
        with mlflow.start_run(run_name=f"{tp.model_name}-study", experiment_id=experiment_id) as parent:
            run_id = parent.info.run_id
            mlflow.set_tags({"features_md5": features_md5, "git_commit": commit, "stage": "train",
                             **tracking.process_tags()})
            space = tp.search
            mlflow.log_params({
                "seed": seed, "n_trials": tp.n_trials, "timeout_s": tp.timeout_s, "cv_folds": tp.cv_folds,
                "cv_gap_days": tp.cv_gap_days, "min_precision": tp.min_precision,
                "threshold_fallback": tp.threshold_fallback, "pruning": tp.pruning,
                "train_end": tp.train_end.isoformat(), "valid_end": tp.valid_end.isoformat(),
                "cv_fold_starts": ",".join(d.isoformat() for d in fold_starts),
                "n_train": split.train.height, "n_valid": split.valid.height, "n_test": split.test.height,
                "n_tune": int(tune_idx.size), "tune_max_rows": tp.tune_max_rows,
                "max_samples_rows": tp.max_samples_rows, "learning_curve_points": tp.learning_curve_points,
                **{f"space_{k}": str(list(v)) for k, v in space.model_dump().items()},
            })
            objective = _Objective(tp, seed, x_tune, y_tune, folds, experiment_id)
            clock = time.perf_counter()
            study.optimize(objective, n_trials=tp.n_trials, timeout=tp.timeout_s, n_jobs=1, gc_after_trial=False)

            timings = {"tuning_s": round(time.perf_counter() - clock, 1)}
            states = [t.state for t in study.trials]
            n_complete = states.count(optuna.trial.TrialState.COMPLETE)
            n_pruned = states.count(optuna.trial.TrialState.PRUNED)
            if n_complete == 0:
                raise RuntimeError("no Optuna trial completed (raise train.timeout_s)")
            timeout_hit = len(study.trials) < tp.n_trials
            if timeout_hit:
                log.warning("timeout reached after %d of %d trials: the result depends on machine speed",
                            len(study.trials), tp.n_trials)
            best = study.best_trial
            best_params = dict(best.params)
            mlflow.log_params({f"best_{k}": v for k, v in best_params.items()})
            mlflow.log_metrics({"best_cv_recall_at_floor": rounded(best.value or 0.0, DIGITS),
                                "trials_complete": n_complete, "trials_pruned": n_pruned, "best_trial": best.number})

            if tp.optuna_plots:
                with tempfile.TemporaryDirectory() as tmp:
                    figures = _study_figures(study, seed)
                    if figures:
                        page = combined_html(figures, f"Optuna study {study.study_name}")
                        (Path(tmp) / "optuna_study.html").write_text(page, encoding="utf-8")
                    trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
                    trials["duration"] = trials["duration"].dt.total_seconds().round(3)
                    trials.to_csv(Path(tmp) / "optuna_trials.csv", index=False)
                    mlflow.log_artifacts(tmp, artifact_path="optuna")

            plateau: int | None = None
            clock = time.perf_counter()
            if tp.learning_curve_points:
                curve = learning_curve(tp, seed, best_params, x_train, y_train, train_dates, x_valid, y_valid)
                plateau = log_learning_curve(curve, tp.learning_curve_tolerance)
            timings["learning_curve_s"] = round(time.perf_counter() - clock, 1)
            clock = time.perf_counter()

            # Refit on the whole training window (bootstrap capped); operating threshold on validation.
            refit_params = scaling.capped_forest_params(best_params, len(x_train), tp.max_samples_rows)
            mlflow.log_params({"refit_bootstrap_rows": refit_params["max_samples"]})
            pipeline = forest_pipeline(refit_params, seed, tp.n_jobs)
            pipeline.fit(x_train, y_train)
            p_valid = scaling.predict_positive(pipeline, x_valid)
            timings["refit_s"] = round(time.perf_counter() - clock, 1)
            # Timings go to MLflow and the printed summary, never to train.json (same inputs, same bytes).
            mlflow.log_metrics({f"time_{k}": v for k, v in timings.items()})
            point: OperatingPoint = choose_threshold(y_valid, p_valid, tp.min_precision, tp.threshold_fallback)
            if point.rule != "min_precision":
                log.warning("validation: no threshold reaches precision >= %.3f; using the max-F2 threshold %.4f",
                            tp.min_precision, point.threshold)
            valid_metrics = probability_metrics(y_valid, p_valid, point.threshold)
            mlflow.log_metrics({f"valid_{k}": v for k, v in valid_metrics.items()})
            mlflow.log_metrics({"threshold": rounded(point.threshold, DIGITS)})
            mlflow.set_tag("threshold_rule", point.rule)

            set_forest_jobs(pipeline, 1)  # serving: single rows, no thread pool
            bundle = {"format": 1, "pipeline": pipeline, "threshold": float(point.threshold),
                      "numeric": list(fdata.NUMERIC), "categorical": list(fdata.CATEGORICAL)}
            model_file = staging / MODEL_FILE
            joblib.dump(bundle, model_file, compress=3)

            interrupts.checkpoint()  # registering a version cannot be undone: not after a swallowed Ctrl-C
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_CODE),
                artifacts={"bundle": str(model_file)},
                signature=model_signature(),
                input_example=input_example(x_train),
                registered_model_name=tp.model_name,
                pip_requirements=_pip_requirements(),
            )
            version = str(info.registered_model_version)
            version_tags = {
                "features_md5": features_md5,
                "git_commit": commit,
                "threshold": f"{point.threshold:.6f}",
                "threshold_rule": point.rule,
                "min_precision": f"{tp.min_precision}",
                "valid_recall": f"{valid_metrics['recall']:.6f}",
                "valid_precision": f"{valid_metrics['precision']:.6f}",
                "valid_roc_auc": f"{valid_metrics['roc_auc']:.6f}",
                "train_end": tp.train_end.isoformat(),
                "valid_end": tp.valid_end.isoformat(),
                "run_id": run_id,
            }
            for key, value in version_tags.items():
                client.set_model_version_tag(tp.model_name, version, key, value)

        meta = {
            "model_name": tp.model_name,
            "version": version,
            "model_uri": f"models:/{tp.model_name}/{version}",
            "run_id": run_id,
            "experiment": tp.experiment,
            "threshold": rounded(point.threshold, DIGITS),
            "threshold_rule": point.rule,
            "min_precision": tp.min_precision,
            "numeric_features": list(fdata.NUMERIC),
            "categorical_features": list(fdata.CATEGORICAL),
            "train_end": tp.train_end.isoformat(),
            "valid_end": tp.valid_end.isoformat(),
            "best_params": best_params,
            "seed": seed,
            "features_md5": features_md5,
            "git_commit": commit,
        }
        metrics_io.write_json(staging / META_FILE, meta)
    result = {
        "best_cv_objective": rounded(best.value or 0.0, DIGITS),
        "best_params": best_params,
        "n_trials_run": len(study.trials),
        "n_trials_completed": n_complete,
        "n_trials_pruned": n_pruned,
        "timeout_hit": timeout_hit,
        "threshold": rounded(point.threshold, DIGITS),
        "threshold_rule": point.rule,
        "min_precision": tp.min_precision,
        "valid": valid_metrics,
        "rows": split.sizes(),
        "tune_rows": int(tune_idx.size),
        "refit_bootstrap_rows": int(refit_params["max_samples"]),
        "learning_curve_plateau_rows": plateau,
        "model_version": version,
    }
    metrics_io.write_json(paths.metrics / "train.json", result)  # no timings: same inputs, same bytes
    result["duration_s"] = round(time.perf_counter() - started, 1)
    result["timings"] = timings
    log.info("train: version %s, threshold %.4f (%s), valid recall %.3f precision %.3f",
             version, point.threshold, point.rule, valid_metrics["recall"], valid_metrics["precision"])
    return result
