"""Evaluate stage: the trained model on the untouched test window, against baselines.

Reads   models/model.joblib + models/model_meta.json (train stage; no MLflow needed to load)
        data/features/ml_readmission_features.parquet
        data/truth/stay_outcomes.parquet (optional: the simulator's truth, for the Bayes oracle;
        a real extract has none and the oracle is then left out)
Writes  reports/metrics/evaluate.json      rf / rf_uncalibrated / lace / logreg / oracle metrics (DVC
                                           metrics; rf is the served, calibrated probability)
        reports/plots/{pr_curve,roc_curve,calibration}.csv   <= max_curve_points per model (DVC plots)
        reports/figures/*.html (+ one shared plotly.min.js, offline), a few *.png (kaleido),
        reports/figures/evaluation.html    every figure in one self-contained page
        and, when the MLflow store is there, the figures + test metrics on the model's run and
        test_* tags on its registered version.

Windows come from model_meta.json (the split the model was trained with): test is
discharge_date >= valid_end. Baselines on the same test rows:
* LACE: the lace_score column as the score (AUCs) and LACE >= lace_cutoff as the flag;
* logistic regression: fitted on the training window (median imputation + missing indicators,
  scaling, one-hot), threshold chosen on the validation window by the forest's rule;
* Bayes oracle: the simulator's true probability of each episode (truth.episode_id == the
  mart's stay_id, one row per episode), threshold chosen on validation by the same rule.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import polars as pl
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from pipelines import atomic, contracts
from pipelines.config import EvaluateParams, Params, Paths
from pipelines.figures import export
from pipelines.figures import model as figs
from pipelines.metrics_io import DIGITS, rounded
from pipelines.model import data as fdata
from pipelines.model import handoffs
from pipelines.model.artifacts import ModelBundle, ModelMeta, load_model
from pipelines.model.metrics import calibration_metrics, f2, flag_metrics, probability_metrics
from pipelines.model.preprocessing import logreg_pipeline
from pipelines.model.pyfunc_model import model_frame
from pipelines.model.scaling import predict_frame_chunked, predict_positive, time_stratified_sample
from pipelines.model.thresholds import Bound, choose_threshold

log = logging.getLogger(__name__)

FIGURES_PNG = ("pr_curve", "roc_curve", "calibration", "confusion_matrix")


def oracle_probabilities(truth_file: Path, stay_ids: pl.Series) -> np.ndarray:
    """The truth's probability per feature row (NaN where the episode is not in the truth).

    truth.episode_id is the stay_id of the first stay of a transfer chain, i.e. the mart's
    stay_id; an episode has one truth row per stay, and its own first stay's row is used.
    """
    truth = pl.read_parquet(truth_file, columns=["stay_id", "episode_id", "true_probability"])
    per_episode = (
        truth.filter(pl.col("true_probability").is_not_null())
        .with_columns(own=(pl.col("stay_id") == pl.col("episode_id")))
        .sort(["episode_id", "own", "stay_id"], descending=[False, True, False])
        .unique("episode_id", keep="first", maintain_order=True)
        .select(pl.col("episode_id").alias(fdata.KEY), "true_probability")
    )
    joined = pl.DataFrame({fdata.KEY: stay_ids}).join(per_episode, on=fdata.KEY, how="left", maintain_order="left")
    return joined["true_probability"].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _downsample(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


Scored = dict[str, tuple[np.ndarray, np.ndarray]]  # model -> (labels, scores) of the rows it scores


def _curves(scores: Scored, max_points: int) -> tuple[Scored, Scored]:
    pr, roc = {}, {}
    for model, (y, s) in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        keep = _downsample(precision.size, max_points)
        pr[model] = (recall[keep], precision[keep])
        fpr, tpr, _ = roc_curve(y, s)
        keep = _downsample(fpr.size, max_points)
        roc[model] = (fpr[keep], tpr[keep])
    return pr, roc


def _write_csv(path: Path, header: tuple[str, str, str], rows: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    lines = [",".join(header)]
    for model, (a, b) in rows.items():
        lines += [f"{model},{rounded(x, DIGITS)},{rounded(y, DIGITS)}" for x, y in zip(a, b, strict=True)]
    atomic.write_text(path, "\n".join(lines) + "\n")


def _flag_metrics(y: np.ndarray, flag: np.ndarray) -> dict[str, float]:
    """evaluate.json's operating point of a flag (no counts)."""
    at = flag_metrics(y, flag)
    return {"recall": at["recall"], "precision": at["precision"], "f2": f2(y, flag),
            "flagged_share": at["flagged_share"]}


# ---- the stage as steps: windows -> forest -> baselines -> oracle -> importance -> files ------------

@dataclass(frozen=True)
class EvalWindows:
    """The split the model was trained with, as model input; test is the untouched window."""

    split: fdata.Split
    x_train: pd.DataFrame
    y_train: np.ndarray
    x_valid: pd.DataFrame
    y_valid: np.ndarray
    x_test: pd.DataFrame
    y_test: np.ndarray


@dataclass(frozen=True)
class Scoring:
    """One model on the test window: its test scores and its evaluate.json block."""

    scores: np.ndarray
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Oracle:
    """The Bayes oracle on the test rows the truth covers, and the forest's gap to it."""

    metrics: dict[str, Any]
    gap: dict[str, float]
    y: np.ndarray  # labels of the covered test rows
    scores: np.ndarray


@dataclass(frozen=True)
class Importance:
    rows: int  # test rows permuted (a time-stratified sample up to permutation_max_rows)
    mean: dict[str, float]  # original column -> mean score drop, in column order
    std: dict[str, float]


def load_windows(paths: Paths, meta: ModelMeta, gap_days: int) -> EvalWindows:
    """The train's windows; `gap_days` (warehouse.readmission_window_days): the label gap dropped
    before the validation and test windows, as in train."""
    split = fdata.temporal_split(fdata.load_features(paths), meta.train_end, meta.valid_end, gap_days=gap_days)
    return EvalWindows(
        split=split,
        x_train=fdata.to_model_input(split.train), y_train=fdata.labels(split.train),
        x_valid=fdata.to_model_input(split.valid), y_valid=fdata.labels(split.valid),
        x_test=fdata.to_model_input(split.test), y_test=fdata.labels(split.test),
    )


def forest_scoring(bundle: ModelBundle, windows: EvalWindows, threads: int = 1) -> Scoring:
    """The Random Forest at its validation threshold, with the confusion counts."""
    y_test, threshold = windows.y_test, bundle.threshold
    p_rf = predict_frame_chunked(bundle, windows.x_test, threads=threads)["probability"].to_numpy()
    rf = probability_metrics(y_test, p_rf, threshold)
    flag_rf = (p_rf >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_test, flag_rf, labels=[0, 1]).ravel())
    rf.update({"threshold": rounded(threshold, DIGITS), "tp": tp, "fp": fp, "fn": fn, "tn": tn})
    return Scoring(p_rf, rf)


def uncalibrated_scoring(bundle: ModelBundle, windows: EvalWindows, threads: int = 1) -> Scoring:
    """The forest's raw score (before the bundle's calibration map): what calibration changed."""
    raw = predict_positive(bundle.pipeline, model_frame(bundle, windows.x_test), threads=threads)
    return Scoring(raw, {"calibration": bundle.calibration.method, **calibration_metrics(windows.y_test, raw)})


def lace_scoring(windows: EvalWindows, cutoff: int) -> Scoring:
    """LACE: the score itself for the AUCs, LACE >= cutoff as the flag."""
    y_test = windows.y_test
    lace_score = windows.split.test["lace_score"].cast(pl.Float64).fill_null(0).to_numpy()
    lace = {"roc_auc": rounded(roc_auc_score(y_test, lace_score), DIGITS),
            "pr_auc": rounded(average_precision_score(y_test, lace_score), DIGITS),
            "cutoff": cutoff, **_flag_metrics(y_test, (lace_score >= cutoff).astype(int))}
    return Scoring(lace_score, lace)


def logreg_scoring(windows: EvalWindows, ep: EvaluateParams, min_precision: float, bound: Bound = "point"
                   ) -> Scoring:
    """Logistic regression: fitted on train, threshold on valid by the forest's rule."""
    model = logreg_pipeline(ep.logreg_c, ep.logreg_max_iter).fit(windows.x_train, windows.y_train)
    point = choose_threshold(windows.y_valid, predict_positive(model, windows.x_valid), min_precision, "f2", bound)
    p_lr = predict_positive(model, windows.x_test)
    return Scoring(p_lr, {**probability_metrics(windows.y_test, p_lr, point.threshold),
                          "threshold": rounded(point.threshold, DIGITS), "threshold_rule": point.rule})


def oracle_scoring(truth_file: Path, windows: EvalWindows, p_rf: np.ndarray, min_precision: float,
                   bound: Bound = "point") -> Oracle | None:
    """The simulator's true probabilities (threshold on valid by the same rule); None without usable truth."""
    if not truth_file.exists():
        log.info("oracle: %s not found (real extract?): oracle left out", truth_file)
        return None
    y_test, y_valid = windows.y_test, windows.y_valid
    o_test = oracle_probabilities(truth_file, windows.split.test[fdata.KEY])
    o_valid = oracle_probabilities(truth_file, windows.split.valid[fdata.KEY])
    matched = ~np.isnan(o_test)
    coverage = float(matched.mean())
    if coverage < 1.0:
        log.warning("oracle: %d of %d test stays have no truth row; oracle metrics without them",
                    int((~matched).sum()), matched.size)
    if not (matched.sum() and len(set(y_test[matched].tolist())) == 2):
        log.warning("oracle: no usable truth rows for the test window; oracle left out")
        return None
    v_ok = ~np.isnan(o_valid)
    point = choose_threshold(y_valid[v_ok], o_valid[v_ok], min_precision, "f2", bound)
    metrics = probability_metrics(y_test[matched], o_test[matched], point.threshold)
    rf_auc = float(roc_auc_score(y_test[matched], p_rf[matched]))
    rf_ap = float(average_precision_score(y_test[matched], p_rf[matched]))
    gap = {
        "roc_auc_oracle_minus_rf": rounded(metrics["roc_auc"] - rf_auc, DIGITS),
        "pr_auc_oracle_minus_rf": rounded(metrics["pr_auc"] - rf_ap, DIGITS),
        # how much of the oracle's lift over chance (AUC 0.5) the forest achieves
        "rf_share_of_oracle_auc_lift": rounded((rf_auc - 0.5) / max(metrics["roc_auc"] - 0.5, 1e-9), DIGITS),
    }
    block = {**metrics, "threshold": rounded(point.threshold, DIGITS), "threshold_rule": point.rule,
             "coverage": rounded(coverage, DIGITS)}
    return Oracle(block, gap, y_test[matched], o_test[matched])  # all test rows but the unmatched


def importance_step(bundle: ModelBundle, windows: EvalWindows, ep: EvaluateParams, seed: int) -> Importance:
    """Permutation importance of the original columns, through the whole pipeline; its cost grows
    with the rows, so a large test window is sampled (all rows up to permutation_max_rows)."""
    y_test = windows.y_test
    rows = time_stratified_sample(windows.split.test["discharge_date"].to_numpy(), y_test, ep.permutation_max_rows,
                                  seed)
    x_model = model_frame(bundle, windows.x_test.iloc[rows])
    result = permutation_importance(
        bundle.pipeline, x_model, y_test[rows], scoring=ep.permutation_scoring, n_repeats=ep.permutation_repeats,
        random_state=seed, n_jobs=1,
    )
    names = list(x_model.columns)
    return Importance(int(rows.size), dict(zip(names, result.importances_mean.tolist(), strict=True)),
                      dict(zip(names, result.importances_std.tolist(), strict=True)))


def evaluation_result(rf: Scoring, raw: Scoring, lace: Scoring, logreg: Scoring, oracle: Oracle | None,
                      importance: Importance, windows: EvalWindows, meta: ModelMeta) -> dict[str, Any]:
    """reports/metrics/evaluate.json."""
    result: dict[str, Any] = {"rf": rf.metrics, "rf_uncalibrated": raw.metrics, "lace": lace.metrics,
                              "logreg": logreg.metrics}
    if oracle is not None:
        result["oracle"] = oracle.metrics
        result["gap"] = oracle.gap
    result["test_rows"] = int(windows.y_test.size)
    result["test_window_start"] = str(meta.valid_end)
    result["model_version"] = meta.version
    result["permutation_rows"] = importance.rows
    result["permutation_importance"] = {
        n: rounded(m, DIGITS) for n, m in sorted(importance.mean.items(), key=lambda t: -t[1])
    }
    return result


def write_curves(paths: Paths, scores: Scored, raw: Scoring, ep: EvaluateParams) -> tuple[Scored, Scored, Scored]:
    """reports/plots/{pr_curve,roc_curve,calibration}.csv (DVC plots); (pr, roc, calibration) per model.
    The reliability curve also shows the forest's raw score (`raw`), before calibration."""
    pr_curves, roc_curves = _curves(scores, ep.max_curve_points)
    calibration = {}
    reliability = {**scores, "rf_uncalibrated": (scores["rf"][0], raw.scores)}
    for model in ("rf", "rf_uncalibrated", "logreg", "oracle"):
        if model in reliability:
            observed, predicted = calibration_curve(*reliability[model], n_bins=ep.calibration_bins,
                                                    strategy=ep.calibration_strategy)
            calibration[model] = (predicted, observed)
    _write_csv(paths.reports / "plots" / "pr_curve.csv", ("model", "recall", "precision"), pr_curves)
    _write_csv(paths.reports / "plots" / "roc_curve.csv", ("model", "fpr", "tpr"), roc_curves)
    _write_csv(paths.reports / "plots" / "calibration.csv", ("model", "predicted", "observed"), calibration)
    return pr_curves, roc_curves, calibration


def write_figures(paths: Paths, params: Params, result: dict[str, Any], threshold: float, scores: Scored,
                  curves: tuple[Scored, Scored, Scored], importance: Importance, meta: ModelMeta) -> Path:
    """reports/figures/ (one folder swapped in whole): the dashboard's figures, same builders and theme.
    `threshold` is the bundle's exact one (evaluate.json holds it rounded)."""
    rf, lace = result["rf"], result["lace"]
    pr_curves, roc_curves, calibration = curves
    aps = {m: float(average_precision_score(y, s)) for m, (y, s) in scores.items()}
    aucs = {m: float(roc_auc_score(y, s)) for m, (y, s) in scores.items()}
    pr_points = {m: list(zip(r.tolist(), p.tolist(), strict=True)) for m, (r, p) in pr_curves.items()}
    tn, fp, fn, tp = rf["tn"], rf["fp"], rf["fn"], rf["tp"]
    figures = {
        # small cells hidden by the publication rule
        "confusion_matrix": figs.confusion_figure(tn, fp, fn, tp, params.report.min_cell_patients, threshold),
        "classification_report": figs.classification_report_figure(tn, fp, fn, tp),
        "pr_curve": figs.pr_figure(pr_points, aps, float(scores["rf"][0].mean()),  # prevalence of the test window
                                   figs.operating_points(rf, lace)),
        "roc_curve": figs.roc_figure(roc_curves, aucs),
        "calibration": figs.calibration_figure(calibration),
        "permutation_importance": figs.importance_figure(importance.mean, len(importance.mean),
                                                         errors=importance.std),
    }
    figures_dir = paths.reports / "figures"
    with atomic.atomic_folder(figures_dir) as staging:  # the whole folder is swapped in, never half-written
        export.write_figures(figures, staging, png=FIGURES_PNG if params.evaluate.png else ())
        page = export.combined_html(figures, f"Evaluation of {meta.model_name} v{meta.version}")
        (staging / "evaluation.html").write_text(page, encoding="utf-8")
    return figures_dir


def run_evaluate(paths: Paths, params: Params) -> dict[str, Any]:
    ep = params.evaluate
    bundle, meta = load_model(paths)
    windows = load_windows(paths, meta, params.warehouse.readmission_window_days)
    # The forest keeps n_jobs=1 (as saved): sklearn's own parallel predict adds the trees in the
    # order threads finish, so the last bit (and the figures' bytes) would change run to run.

    rf = forest_scoring(bundle, windows, ep.n_jobs)
    raw = uncalibrated_scoring(bundle, windows, ep.n_jobs)
    lace = lace_scoring(windows, ep.lace_cutoff)
    bound = cast(Bound, meta.threshold_bound)  # the baselines' thresholds by the forest's own rule
    logreg = logreg_scoring(windows, ep, meta.min_precision, bound)
    oracle = oracle_scoring(paths.truth / contracts.TRUTH_STAYS_FILE, windows, rf.scores, meta.min_precision, bound)
    importance = importance_step(bundle, windows, ep, meta.seed)
    result = evaluation_result(rf, raw, lace, logreg, oracle, importance, windows, meta)

    y_test = windows.y_test
    scores: Scored = {"rf": (y_test, rf.scores), "logreg": (y_test, logreg.scores), "lace": (y_test, lace.scores)}
    if oracle is not None:
        scores["oracle"] = (oracle.y, oracle.scores)
    curves = write_curves(paths, scores, raw, ep)
    figures_dir = write_figures(paths, params, result, bundle.threshold, scores, curves, importance, meta)
    metrics_file = paths.metrics / "evaluate.json"
    handoffs.write_evaluation(metrics_file, result)

    if ep.log_to_mlflow:
        from mlflow.exceptions import MlflowException

        try:
            _log_to_mlflow(paths, meta, result, figures_dir, metrics_file)
        except MlflowException as exc:  # e.g. models/ restored by DVC without its mlruns/ store
            log.warning("evaluation not logged to MLflow (%s v%s): %s", meta.model_name, meta.version, exc)
    log.info("evaluate: test recall %.3f precision %.3f ROC-AUC %.3f Brier %.4f (raw %.4f) (LACE %.3f, logreg %.3f%s)",
             rf.metrics["recall"], rf.metrics["precision"], rf.metrics["roc_auc"], rf.metrics["brier"],
             raw.metrics["brier"], lace.metrics["roc_auc"],
             logreg.metrics["roc_auc"], f", oracle {oracle.metrics['roc_auc']:.3f}" if oracle else "")
    return result


def _log_to_mlflow(paths: Paths, meta: ModelMeta, result: dict[str, Any], figures_dir: Path,
                   metrics_file: Path) -> None:
    """Test metrics, figures and evaluate.json on the model's run; test_* tags on its version."""
    from pipelines.model import tracking

    if not tracking.store_exists(paths):
        log.warning("no MLflow store at %s: evaluation not logged to MLflow", tracking.describe_store(paths))
        return
    from mlflow.entities import Metric

    client = tracking.connect(paths)
    run_id = client.get_model_version(meta.model_name, meta.version).run_id  # models/ holds no run id
    if run_id is None:
        log.warning("%s v%s has no run: evaluation not logged to MLflow", meta.model_name, meta.version)
        return
    timestamp = int(time.time() * 1000)
    metrics = [
        Metric(f"test_{model}_{name}", float(value), timestamp, 0)
        for model in ("rf", "rf_uncalibrated", "lace", "logreg", "oracle") if model in result
        for name, value in result[model].items() if isinstance(value, int | float)
    ]
    client.log_batch(run_id, metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "evaluation.html").write_bytes((figures_dir / "evaluation.html").read_bytes())
        for png in figures_dir.glob("*.png"):
            (folder / png.name).write_bytes(png.read_bytes())
        (folder / "evaluate.json").write_bytes(metrics_file.read_bytes())
        for csv in (paths.reports / "plots").glob("*.csv"):
            (folder / csv.name).write_bytes(csv.read_bytes())
        client.log_artifacts(run_id, str(folder), artifact_path="evaluation")
    rf = result["rf"]
    for name in ("recall", "precision", "f2", "roc_auc", "pr_auc"):
        client.set_model_version_tag(meta.model_name, meta.version, f"test_{name}", f"{rf[name]:.6f}")
