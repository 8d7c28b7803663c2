"""Evaluate stage: the trained model on the untouched test window, against baselines.

Reads   models/model.joblib + models/model_meta.json (train stage; no MLflow needed to load)
        data/features/ml_readmission_features.parquet
        data/truth/stay_outcomes.parquet (optional: the simulator's truth, for the Bayes oracle;
        a real extract has none and the oracle is then left out)
Writes  reports/metrics/evaluate.json      rf / lace / logreg / oracle metrics (DVC metrics)
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
from pathlib import Path
from typing import Any

import numpy as np
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

from pipelines import atomic, contracts, metrics_io
from pipelines.config import Params, Paths
from pipelines.figures import export
from pipelines.figures import model as figs
from pipelines.metrics_io import DIGITS, rounded
from pipelines.model import data as fdata
from pipelines.model.artifacts import ModelMeta, load_model
from pipelines.model.metrics import f2, flag_metrics, probability_metrics
from pipelines.model.preprocessing import logreg_pipeline, set_forest_jobs
from pipelines.model.pyfunc_model import model_frame
from pipelines.model.scaling import predict_frame_chunked, predict_positive, time_stratified_sample
from pipelines.model.thresholds import choose_threshold

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


def run_evaluate(paths: Paths, params: Params) -> dict[str, Any]:
    ep = params.evaluate
    bundle, meta = load_model(paths)
    seed, threshold, min_precision = meta.seed, bundle.threshold, meta.min_precision
    train_end, valid_end = meta.train_end, meta.valid_end

    frame = fdata.load_features(paths)
    split = fdata.temporal_split(frame, train_end, valid_end)
    x_train, y_train = fdata.to_model_input(split.train), fdata.labels(split.train)
    x_valid, y_valid = fdata.to_model_input(split.valid), fdata.labels(split.valid)
    x_test, y_test = fdata.to_model_input(split.test), fdata.labels(split.test)
    set_forest_jobs(bundle.pipeline, ep.n_jobs)  # in memory only; the saved model keeps 1

    # Random Forest at its validation threshold.
    p_rf = predict_frame_chunked(bundle, x_test)["probability"].to_numpy()
    rf = probability_metrics(y_test, p_rf, threshold)
    flag_rf = (p_rf >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_test, flag_rf, labels=[0, 1]).ravel())
    rf.update({"threshold": rounded(threshold, DIGITS), "tp": tp, "fp": fp, "fn": fn, "tn": tn})

    # LACE: the score itself for the AUCs, LACE >= cutoff as the flag.
    lace_score = split.test["lace_score"].cast(pl.Float64).fill_null(0).to_numpy()
    lace = {"roc_auc": rounded(roc_auc_score(y_test, lace_score), DIGITS),
            "pr_auc": rounded(average_precision_score(y_test, lace_score), DIGITS),
            "cutoff": ep.lace_cutoff, **_flag_metrics(y_test, (lace_score >= ep.lace_cutoff).astype(int))}

    # Logistic regression: fitted on train, threshold on valid by the same rule.
    logreg_model = logreg_pipeline(ep.logreg_c, ep.logreg_max_iter).fit(x_train, y_train)
    lr_valid = predict_positive(logreg_model, x_valid)
    lr_point = choose_threshold(y_valid, lr_valid, min_precision, "f2")
    p_lr = predict_positive(logreg_model, x_test)
    logreg = {**probability_metrics(y_test, p_lr, lr_point.threshold),
              "threshold": rounded(lr_point.threshold, DIGITS),
              "threshold_rule": lr_point.rule}

    scores: Scored = {"rf": (y_test, p_rf), "logreg": (y_test, p_lr), "lace": (y_test, lace_score)}
    result: dict[str, Any] = {"rf": rf, "lace": lace, "logreg": logreg}

    # Bayes oracle from the simulator's truth, when there is one.
    truth_file = paths.truth / contracts.TRUTH_STAYS_FILE
    if truth_file.exists():
        o_test = oracle_probabilities(truth_file, split.test[fdata.KEY])
        o_valid = oracle_probabilities(truth_file, split.valid[fdata.KEY])
        matched = ~np.isnan(o_test)
        coverage = float(matched.mean())
        if coverage < 1.0:
            log.warning("oracle: %d of %d test stays have no truth row; oracle metrics without them",
                        int((~matched).sum()), matched.size)
        if matched.sum() and len(set(y_test[matched].tolist())) == 2:
            v_ok = ~np.isnan(o_valid)
            o_point = choose_threshold(y_valid[v_ok], o_valid[v_ok], min_precision, "f2")
            oracle_metrics = probability_metrics(y_test[matched], o_test[matched], o_point.threshold)
            result["oracle"] = {**oracle_metrics, "threshold": rounded(o_point.threshold, DIGITS),
                                "threshold_rule": o_point.rule, "coverage": rounded(coverage, DIGITS)}
            rf_auc = float(roc_auc_score(y_test[matched], p_rf[matched]))
            rf_ap = float(average_precision_score(y_test[matched], p_rf[matched]))
            result["gap"] = {
                "roc_auc_oracle_minus_rf": rounded(oracle_metrics["roc_auc"] - rf_auc, DIGITS),
                "pr_auc_oracle_minus_rf": rounded(oracle_metrics["pr_auc"] - rf_ap, DIGITS),
                # how much of the oracle's lift over chance (AUC 0.5) the forest achieves
                "rf_share_of_oracle_auc_lift": rounded(
                    (rf_auc - 0.5) / max(oracle_metrics["roc_auc"] - 0.5, 1e-9), DIGITS),
            }
            scores["oracle"] = (y_test[matched], o_test[matched])  # all test rows but the unmatched
        else:
            log.warning("oracle: no usable truth rows for the test window; oracle left out")
    else:
        log.info("oracle: %s not found (real extract?): oracle left out", truth_file)
    result["test_rows"] = int(y_test.size)
    result["test_window_start"] = str(valid_end)
    result["model_version"] = meta.version

    # Permutation importance of the original columns, through the whole pipeline; its cost grows
    # with the rows, so a large test window is sampled (all rows up to permutation_max_rows).
    rows = time_stratified_sample(split.test["discharge_date"].to_numpy(), y_test, ep.permutation_max_rows, seed)
    x_model = model_frame(bundle, x_test.iloc[rows])
    importance = permutation_importance(
        bundle.pipeline, x_model, y_test[rows], scoring=ep.permutation_scoring, n_repeats=ep.permutation_repeats,
        random_state=seed, n_jobs=1,
    )
    result["permutation_rows"] = int(rows.size)
    names = list(x_model.columns)
    result["permutation_importance"] = {
        n: rounded(m, DIGITS)
        for n, m in sorted(zip(names, importance.importances_mean, strict=True), key=lambda t: -t[1])
    }

    # Curves (DVC plots), figures.
    pr_curves, roc_curves = _curves(scores, ep.max_curve_points)
    calibration = {}
    for model in ("rf", "logreg", "oracle"):
        if model in scores:
            observed, predicted = calibration_curve(*scores[model], n_bins=ep.calibration_bins,
                                                    strategy=ep.calibration_strategy)
            calibration[model] = (predicted, observed)
    _write_csv(paths.reports / "plots" / "pr_curve.csv", ("model", "recall", "precision"), pr_curves)
    _write_csv(paths.reports / "plots" / "roc_curve.csv", ("model", "fpr", "tpr"), roc_curves)
    _write_csv(paths.reports / "plots" / "calibration.csv", ("model", "predicted", "observed"), calibration)

    aps = {m: float(average_precision_score(y, s)) for m, (y, s) in scores.items()}
    aucs = {m: float(roc_auc_score(y, s)) for m, (y, s) in scores.items()}
    pr_points = {m: list(zip(r.tolist(), p.tolist(), strict=True)) for m, (r, p) in pr_curves.items()}
    figures = {
        # the dashboard's figures, same builders and theme; small cells hidden by the publication rule
        "confusion_matrix": figs.confusion_figure(tn, fp, fn, tp, params.report.min_cell_patients, threshold),
        "classification_report": figs.classification_report_figure(tn, fp, fn, tp),
        "pr_curve": figs.pr_figure(pr_points, aps, float(y_test.mean()), figs.operating_points(rf, lace)),
        "roc_curve": figs.roc_figure(roc_curves, aucs),
        "calibration": figs.calibration_figure(calibration),
        "permutation_importance": figs.importance_figure(
            dict(zip(names, importance.importances_mean.tolist(), strict=True)), len(names),
            errors=dict(zip(names, importance.importances_std.tolist(), strict=True))),
    }
    figures_dir = paths.reports / "figures"
    with atomic.atomic_folder(figures_dir) as staging:  # the whole folder is swapped in, never half-written
        export.write_figures(figures, staging, png=FIGURES_PNG if ep.png else ())
        page = export.combined_html(figures, f"Evaluation of {meta.model_name} v{meta.version}")
        (staging / "evaluation.html").write_text(page, encoding="utf-8")

    metrics_file = paths.metrics / "evaluate.json"
    metrics_io.write_json(metrics_file, result)

    if ep.log_to_mlflow:
        from mlflow.exceptions import MlflowException

        try:
            _log_to_mlflow(paths, meta, result, figures_dir, metrics_file)
        except MlflowException as exc:  # e.g. models/ restored by DVC without its mlruns/ store
            log.warning("evaluation not logged to MLflow run %s: %s", meta.run_id, exc)
    log.info("evaluate: test recall %.3f precision %.3f ROC-AUC %.3f (LACE %.3f, logreg %.3f%s)",
             rf["recall"], rf["precision"], rf["roc_auc"], lace["roc_auc"], logreg["roc_auc"],
             f", oracle {result['oracle']['roc_auc']:.3f}" if "oracle" in result else "")
    return result


def _log_to_mlflow(paths: Paths, meta: ModelMeta, result: dict[str, Any], figures_dir: Path,
                   metrics_file: Path) -> None:
    """Test metrics, figures and evaluate.json on the model's run; test_* tags on its version."""
    if not (paths.mlruns / "mlflow.db").exists():
        log.warning("no MLflow store at %s: evaluation not logged to MLflow", paths.mlruns)
        return
    from mlflow.entities import Metric

    from pipelines.model import tracking

    client = tracking.connect(paths)
    run_id = meta.run_id
    timestamp = int(time.time() * 1000)
    metrics = [
        Metric(f"test_{model}_{name}", float(value), timestamp, 0)
        for model in ("rf", "lace", "logreg", "oracle") if model in result
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
