"""Monitor stage: is the model still valid and fair on the production window?

Reads   data/features/ml_readmission_features.parquet (contracts.FEATURE_SCHEMA; an extra
        `patient_id` column, when present, makes the fairness cells count patients)
        models/model.joblib + models/model_meta.json (the train stage; no MLflow needed)
Writes  reports/monitoring/drift.html       Evidently: feature drift + target drift (reference =
                                            training window), prediction drift, model quality;
                                            one self-contained page (scripts inlined, opens offline)
        reports/monitoring/drift.json       per column: method, statistic, threshold, verdict;
                                            dataset drift; target / prediction drift; model quality
                                            (Evidently's figures checked against scikit-learn)
        reports/monitoring/fairness.json    per department / sex / age band: counts, recall,
                                            precision, FNR, selection rate, Brier; parity ratios;
                                            four-fifths screening (a heuristic, not a legal test)
        reports/monitoring/fairness.html    Plotly charts + tables, plotly.js inlined
        reports/metrics/monitoring.json     flat DVC metrics; `department_recall_ratio` is read by
                                            the promotion gate

Windows (discharge_date; start inclusive, end exclusive), by default from the model's own split
(model_meta.json, else params `train`): reference = discharge_date < train_end (the training
window), current = discharge_date >= valid_end (the test window = production). `monitor` params
may set explicit dates. JSON files hold sorted keys and rounded floats, and no timestamps.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from pipelines import atomic, contracts, metrics_io
from pipelines.config import Params, Paths
from pipelines.config.monitor import FEATURES, MonitorParams
from pipelines.errors import MissingInputError, PipelineInputError
from pipelines.monitoring import fairness as fair

if TYPE_CHECKING:  # loaded in run_monitor (the model toolkit pulls in MLflow)
    from pipelines.model.artifacts import ModelBundle, ModelMeta

log = logging.getLogger(__name__)

FEATURES_FILE = "ml_readmission_features.parquet"
PATIENT_ID = "patient_id"  # optional column: fairness cells count patients when it is there
LABEL = contracts.FEATURE_LABEL
DATE = contracts.FEATURE_SPLIT_DATE
KEY = contracts.FEATURE_KEY

__all__ = ["MonitorParams", "Windows", "run_monitor"]


class MonitorInputError(PipelineInputError, ValueError):
    """The feature mart or a window is not usable for monitoring."""



@dataclass(frozen=True)
class Window:
    name: str
    start: date | None  # inclusive
    end: date | None  # exclusive

    def expr(self) -> pl.Expr:
        cond = pl.lit(True)
        if self.start is not None:
            cond = cond & (pl.col(DATE) >= self.start)
        if self.end is not None:
            cond = cond & (pl.col(DATE) < self.end)
        return cond

    def describe(self) -> str:
        start = self.start.isoformat() if self.start else "start of data"
        end = self.end.isoformat() if self.end else "end of data"
        return f"{start} (incl.) to {end} (excl.)"

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None}


@dataclass(frozen=True)
class Windows:
    reference: Window
    current: Window
    valid: Window  # the model's validation window: out-of-sample scores for prediction drift
    source: str


def _overlap(a: Window, b: Window) -> bool:
    a_before_b_ends = a.start is None or b.end is None or a.start < b.end
    b_before_a_ends = b.start is None or a.end is None or b.start < a.end
    return a_before_b_ends and b_before_a_ends


def resolve_windows(mp: MonitorParams, meta: ModelMeta | None, params: Params) -> Windows:
    """Explicit `monitor` dates win; otherwise the trained model's split (meta, else params.train)."""
    if meta is not None:
        train_end, valid_end = meta.train_end, meta.valid_end
        source = "model_meta.json"
    else:
        tp = params.train
        train_end, valid_end, source = tp.train_end, tp.valid_end, "params.train"
    explicit = any(d is not None for d in (mp.reference_start, mp.reference_end, mp.current_start, mp.current_end))
    windows = Windows(
        reference=Window("reference", mp.reference_start, mp.reference_end or train_end),
        current=Window("current", mp.current_start or valid_end, mp.current_end),
        valid=Window("valid", train_end, valid_end),
        source=f"{source} + monitor params" if explicit else source,
    )
    ref, cur = windows.reference, windows.current
    if _overlap(ref, cur):
        log.warning("monitor: reference (%s) and current (%s) windows overlap", ref.describe(), cur.describe())
    return windows


def load_mart(path: Path) -> pl.DataFrame:
    """The feature mart with the contract's columns and types (+ patient_id when present)."""
    if not path.exists():
        raise MissingInputError(f"{path}: feature mart not found (run the features stage first)")
    frame = pl.read_parquet(path)
    missing = [c for c in contracts.FEATURE_SCHEMA if c not in frame.columns]
    if missing:
        raise MonitorInputError(f"{path}: missing column(s) {missing}")
    keep = list(contracts.FEATURE_SCHEMA) + ([PATIENT_ID] if PATIENT_ID in frame.columns else [])
    frame = frame.select(keep).cast(contracts.FEATURE_SCHEMA)  # type: ignore[arg-type]
    if PATIENT_ID in frame.columns:
        frame = frame.with_columns(pl.col(PATIENT_ID).cast(pl.String))
    return frame.sort([DATE, KEY])


def score(bundle: ModelBundle, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with the model's `probability` and `high_risk` columns."""
    from pipelines.model.pyfunc_model import predict_frame
    from pipelines.model.scaling import PREDICT_CHUNK_ROWS

    if frame.height == 0:
        return frame.with_columns(probability=pl.lit(None, pl.Float64), high_risk=pl.lit(None, pl.Int64))
    # Slice by slice: only one slice's pandas copy and one-hot matrix exist at a time.
    parts = [predict_frame(bundle, to_pandas(part, FEATURES)) for part in frame.iter_slices(PREDICT_CHUNK_ROWS)]
    probability = np.concatenate([p["probability"].to_numpy() for p in parts])
    high_risk = np.concatenate([p["high_risk"].to_numpy() for p in parts])
    return frame.with_columns(
        probability=pl.Series(probability, dtype=pl.Float64),
        high_risk=pl.Series(high_risk, dtype=pl.Int64),
    )


def to_pandas(frame: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Numerics as float64 (null -> NaN), strings as object (null -> None)."""
    exprs = []
    for c in columns:
        dtype = frame.schema[c]
        exprs.append(pl.col(c).cast(pl.Float64) if dtype.is_numeric() else pl.col(c).cast(pl.String))
    return frame.select(exprs).to_pandas()


def json_text(payload: dict[str, Any]) -> str:
    """The monitoring JSON files: rounded, NaN as null, non-ASCII kept."""
    return metrics_io.json_text(metrics_io.json_ready(payload, metrics_io.DIGITS), ensure_ascii=False,
                                allow_nan=False)


def flat_metrics(drift: dict[str, Any], fairness: dict[str, Any]) -> dict[str, Any]:
    """reports/metrics/monitoring.json: one level, numbers and booleans (DVC metrics)."""
    dataset = drift["data_drift"]["dataset"]
    quality = drift["model_quality"]
    out: dict[str, Any] = {
        "dataset_drift": dataset["drifted"],
        "drift_share": dataset["drift_share"],
        "n_drifted_columns": dataset["n_drifted_columns"],
        "n_columns": dataset["n_columns"],
        "target_drift": drift["target_drift"]["drifted"],
        "prediction_drift": drift["prediction_drift"]["drifted"],
        "reference_rows": drift["windows"]["reference"]["rows"],
        "current_rows": drift["windows"]["current"]["rows"],
        "current_recall": quality["metrics"]["recall"] if quality["available"] else None,
        "current_precision": quality["metrics"]["precision"] if quality["available"] else None,
        "current_roc_auc": quality["metrics"]["roc_auc"] if quality["available"] else None,
        "four_fifths_any_below_threshold": fairness["four_fifths"]["any_below_threshold"],
        "n_suppressed_groups": sum(block["n_suppressed"] for block in fairness["groups"].values()),
    }
    for group, block in fairness["groups"].items():
        for metric, entry in block["parity"].items():
            out[f"{group}_{metric}_ratio"] = entry["ratio"]
            if "ci95" in entry:
                low, high = entry["ci95"] or (None, None)
                out[f"{group}_{metric}_ratio_ci_low"], out[f"{group}_{metric}_ratio_ci_high"] = low, high
        ratios = [r["observed_to_expected"] for r in block["groups"]
                  if not r["suppressed"] and r["observed_to_expected"] is not None]
        # the group whose readmissions stray most from the served probabilities (1 = calibrated)
        out[f"{group}_worst_observed_to_expected"] = max(ratios, key=lambda v: abs(v - 1.0)) if ratios else None
    return out


# ---- the stage as steps: windows -> frames -> scores -> drift -> fairness -> reports ------------

@dataclass(frozen=True)
class Drift:
    """Evidently's sections (drift.html) and verdicts (drift.json) for the scored windows."""

    sections: list[Any]  # drift, prediction drift and (when labelled) model quality snapshots
    data_drift: dict[str, Any]  # per column and dataset, with the target's verdict under "target"
    prediction_drift: dict[str, Any]
    model_quality: dict[str, Any]
    prediction_reference: str  # "valid" or "train": the window prediction drift compares against


def window_frames(mart: pl.DataFrame, windows: Windows) -> dict[str, pl.DataFrame]:
    """The mart's rows in each window (reference, current, valid); MonitorInputError if one is empty."""
    frames = {w.name: mart.filter(w.expr()) for w in (windows.reference, windows.current, windows.valid)}
    for name in ("reference", "current"):
        if frames[name].height == 0:
            window = getattr(windows, name)
            raise MonitorInputError(f"the {name} window ({window.describe()}) holds no index stay")
    log.info("monitor: reference %d rows (%s), current %d rows (%s)", frames["reference"].height,
             windows.reference.describe(), frames["current"].height, windows.current.describe())
    return frames


def drift_step(scored: dict[str, pl.DataFrame], mp: MonitorParams, threshold: float) -> Drift:
    """Data and target drift (reference vs current), prediction drift, model quality on current."""
    from pipelines.monitoring import drift as ev

    columns = mp.drift_columns
    numerical = set(contracts.NUMERIC_FEATURES)
    ref_pd = to_pandas(scored["reference"], [*columns, LABEL])
    cur_pd = to_pandas(scored["current"], [*columns, LABEL, "probability", "high_risk"])
    drift_section, data_drift = ev.data_drift(ref_pd, cur_pd, columns, numerical, LABEL, mp)

    pred_ref_name = mp.prediction_reference
    if pred_ref_name == "valid" and scored["valid"].height == 0:
        log.warning("monitor: empty validation window; prediction drift against the reference window")
        pred_ref_name = "train"
    pred_ref = scored["valid"] if pred_ref_name == "valid" else scored["reference"]
    pred_section, pred_drift = ev.prediction_drift(
        pred_ref["probability"].to_pandas(), scored["current"]["probability"].to_pandas(), mp,
        "validation" if pred_ref_name == "valid" else "reference (training, in-sample)")
    quality_section, quality = ev.model_quality(cur_pd, LABEL, threshold)
    sections = [drift_section, pred_section] + ([quality_section] if quality_section else [])
    return Drift(sections, data_drift, pred_drift, quality, pred_ref_name)


def model_block(meta: ModelMeta, threshold: float) -> dict[str, Any]:
    """The "model" block of drift.json and fairness.json (promote reads its version)."""
    return {"version": meta.version, "model_name": meta.model_name, "threshold": threshold,
            "train_end": meta.train_end.isoformat(), "valid_end": meta.valid_end.isoformat()}


def window_block(windows: Windows, frames: dict[str, pl.DataFrame], drift: Drift) -> dict[str, Any]:
    """The windows as reported: dates, source and rows of each."""
    pred_ref = windows.valid if drift.prediction_reference == "valid" else windows.reference
    return {
        "source": windows.source,
        "reference": {**windows.reference.as_dict(), "rows": frames["reference"].height},
        "current": {**windows.current.as_dict(), "rows": frames["current"].height},
        "prediction_reference": {**pred_ref.as_dict(), "rows": frames[pred_ref.name].height},
    }


def drift_report(window_info: dict[str, Any], model: dict[str, Any], drift: Drift) -> dict[str, Any]:
    """reports/monitoring/drift.json."""
    data_drift = dict(drift.data_drift)
    target = data_drift.pop("target")
    return {
        "windows": window_info,
        "model": model,
        "data_drift": data_drift,
        "target_drift": target,
        "prediction_drift": drift.prediction_drift,
        "model_quality": drift.model_quality,
        "notes": [
            "Per-column verdicts are Evidently's drift tests. The statistic is a p-value (drift when below the "
            "threshold) for small reference samples and a distance (drift when at or above it) for large ones.",
            "Model quality: high_risk = probability >= the model threshold; figures from scikit-learn, "
            "Evidently's ClassificationPreset agrees within max_abs_difference_vs_sklearn.",
        ],
    }


def fairness_step(current: pl.DataFrame, mp: MonitorParams, has_patient_id: bool, seed: int = 0) -> dict[str, Any]:
    """Per-group rates on the scored current window (small cells suppressed), four-fifths screen."""
    return fair.fairness_report(
        current, mp.fairness_groups, mp.age_band_edges, mp.min_cell_patients, mp.four_fifths_threshold,
        label=LABEL, patient_id=PATIENT_ID if has_patient_id else None,
        reliability_groups=mp.reliability_groups, n_bins=mp.reliability_bins,
        replicates=mp.bootstrap_replicates, seed=seed,
    )


def write_reports(paths: Paths, outputs: dict[str, str], summary: dict[str, Any]) -> None:
    """reports/monitoring/ swapped in as one folder, then reports/metrics/monitoring.json."""
    with atomic.atomic_folder(paths.reports / "monitoring") as staging:
        for name, text in outputs.items():
            (staging / name).write_text(text, encoding="utf-8")
    atomic.write_text(paths.metrics / "monitoring.json", json_text(summary))


def run_monitor(paths: Paths, params: Params) -> dict[str, Any]:
    """The stage: score both windows, run the drift / quality / fairness checks, write reports."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry opt-out (reports do not send any)
    from pipelines.model.artifacts import load_model
    from pipelines.monitoring import drift as ev
    from pipelines.monitoring.html import fairness_html

    mp = params.monitor
    bundle, meta = load_model(paths)
    threshold = bundle.threshold
    windows = resolve_windows(mp, meta, params)
    mart = load_mart(paths.features / FEATURES_FILE)
    frames = window_frames(mart, windows)
    scored = {name: score(bundle, frame) for name, frame in frames.items()}
    drift = drift_step(scored, mp, threshold)

    model = model_block(meta, threshold)
    window_info = window_block(windows, frames, drift)
    report = drift_report(window_info, model, drift)
    fairness = fairness_step(scored["current"], mp, PATIENT_ID in mart.columns, params.seed)
    outputs = {
        "drift.html": ev.combined_html(drift.sections),
        "drift.json": json_text(report),
        "fairness.json": json_text({**fairness, "window": window_info["current"], "model": model}),
        "fairness.html": fairness_html(fairness, {"window": windows.current.describe(),
                                                  "model_version": model["version"], "threshold": threshold}),
    }
    summary = flat_metrics(report, fairness)
    write_reports(paths, outputs, summary)
    log.info("monitor: dataset drift %s (%d/%d columns), department recall ratio %s",
             summary["dataset_drift"], summary["n_drifted_columns"], summary["n_columns"],
             summary["department_recall_ratio"])
    return metrics_io.json_ready(summary, metrics_io.DIGITS)  # type: ignore[no-any-return]
