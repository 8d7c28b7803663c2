"""Evidently 0.7 reports: data drift, target drift, prediction drift and model quality.

Per-column verdicts come from Evidently's own drift tests (the statistic is a p-value for
small reference samples and a distance for large ones, so its raw value is never compared
here); the dataset verdict is Evidently's rule: drifted when the share of drifted columns
is >= drift_share. Classification numbers are recomputed with scikit-learn and must agree.

Evidently is imported inside the functions: it takes ~20 s to import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pipelines.config.monitor import MonitorParams

QUALITY_TOLERANCE = 1e-6


class MonitorError(RuntimeError):
    """Evidently's results are inconsistent with each other or with scikit-learn."""


@dataclass(frozen=True)
class Section:
    """One Evidently snapshot and the heading it gets in the combined HTML page."""

    title: str
    snapshot: Any


def _definition(numerical: Sequence[str], categorical: Sequence[str], classification: Any = None) -> Any:
    from evidently import DataDefinition

    kwargs: dict[str, Any] = {"numerical_columns": list(numerical), "categorical_columns": list(categorical)}
    if classification is not None:
        kwargs["classification"] = [classification]
    return DataDefinition(**kwargs)


def _dataset(frame: pd.DataFrame, definition: Any) -> Any:
    from evidently import Dataset

    return Dataset.from_pandas(frame, data_definition=definition)


def value_drifts(snapshot_dict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Column -> method, statistic, threshold and verdict of every ValueDrift in a snapshot.

    The verdict is the status of the drift test Evidently attaches to the metric (FAIL =
    drift). The kind of statistic follows from it: a p-value drifts below the threshold, a
    distance at or above it.
    """
    statuses = {
        t["metric_config"]["metric_id"]: t["status"]
        for t in snapshot_dict.get("tests", [])
        if t.get("id") == "drift"
    }
    out: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        status = statuses.get(metric["id"])
        if status not in ("FAIL", "SUCCESS"):
            raise MonitorError(f"no drift test result for column '{config['column']}' (status {status!r})")
        value, threshold = float(metric["value"]), float(config["threshold"])
        drifted = status == "FAIL"
        kind = "p_value" if drifted == (value < threshold) else "distance"
        out[config["column"]] = {
            "method": config["method"],
            "statistic": None if math.isnan(value) else value,
            "statistic_kind": kind,
            "threshold": threshold,
            "drift_rule": "statistic < threshold" if kind == "p_value" else "statistic >= threshold",
            "drifted": drifted,
        }
    return out


def _drifted_columns_count(snapshot_dict: dict[str, Any]) -> dict[str, float]:
    for metric in snapshot_dict["metrics"]:
        if metric["config"].get("type", "").endswith(":DriftedColumnsCount"):
            return {"count": float(metric["value"]["count"]), "share": float(metric["value"]["share"])}
    raise MonitorError("no DriftedColumnsCount in the drift snapshot")


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    numerical: set[str],
    label: str | None,
    mp: MonitorParams,
) -> tuple[Section, dict[str, Any]]:
    """Feature drift (DataDriftPreset over `columns`) and target drift (`label`), reference vs current."""
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    num = [c for c in columns if c in numerical]
    cat = [c for c in columns if c not in numerical]
    keep = list(columns) + ([label] if label else [])
    definition = _definition(num, cat + ([label] if label else []))
    metrics: list[Any] = [
        DataDriftPreset(
            columns=list(columns),
            drift_share=mp.drift_share,
            num_method=mp.num_method,
            cat_method=mp.cat_method,
            num_threshold=mp.num_threshold,
            cat_threshold=mp.cat_threshold,
        )
    ]
    if label:
        metrics.append(ValueDrift(column=label, method=mp.cat_method, threshold=mp.cat_threshold))
    snapshot = Report(metrics, include_tests=True).run(
        _dataset(current[keep], definition), _dataset(reference[keep], definition)
    )
    result = snapshot.dict()
    drifts = value_drifts(result)
    per_column = {c: {**drifts[c], "type": "numerical" if c in numerical else "categorical"} for c in columns}
    counted = _drifted_columns_count(result)
    n_drifted = sum(1 for c in columns if per_column[c]["drifted"])
    if int(counted["count"]) != n_drifted:
        raise MonitorError(f"DriftedColumnsCount says {counted['count']} columns drifted, the column tests {n_drifted}")
    share = n_drifted / len(columns)
    summary: dict[str, Any] = {
        "dataset": {
            "drifted": bool(share >= mp.drift_share),
            "rule": "share of drifted columns >= drift_share_threshold",
            "drift_share": share,
            "drift_share_threshold": mp.drift_share,
            "n_drifted_columns": n_drifted,
            "n_columns": len(columns),
            "drifted_columns": [c for c in columns if per_column[c]["drifted"]],
        },
        "columns": per_column,
    }
    if label:
        summary["target"] = {
            **drifts[label],
            "column": label,
            "type": "categorical",
            "reference_rate": float(reference[label].mean()),
            "current_rate": float(current[label].mean()),
        }
    return Section("Data drift (features) and target drift: reference = training window", snapshot), summary


def prediction_drift(reference: pd.Series, current: pd.Series, mp: MonitorParams,
                     reference_name: str) -> tuple[Section, dict[str, Any]]:
    """Drift of the model's probability, `reference_name` scores vs current scores."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    column = "probability"
    definition = _definition([column], [])
    snapshot = Report([ValueDrift(column=column, method=mp.num_method, threshold=mp.num_threshold)],
                      include_tests=True).run(
        _dataset(pd.DataFrame({column: current.to_numpy()}), definition),
        _dataset(pd.DataFrame({column: reference.to_numpy()}), definition),
    )
    drift = value_drifts(snapshot.dict())[column]
    summary = {
        **drift,
        "column": column,
        "type": "numerical",
        "reference": reference_name,
        "reference_mean": float(reference.mean()),
        "current_mean": float(current.mean()),
        "reference_rows": int(reference.size),
    }
    return Section(f"Prediction drift: probability, reference = {reference_name} window scores", snapshot), summary


_EVIDENTLY_QUALITY = {  # Evidently metric type -> our name
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "RocAuc": "roc_auc",
    "LogLoss": "log_loss",
    "TPR": "true_positive_rate",
    "TNR": "true_negative_rate",
    "FPR": "false_positive_rate",
    "FNR": "false_negative_rate",
}


def sklearn_quality(y: np.ndarray, flag: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """The same metrics as Evidently's ClassificationPreset, from scikit-learn."""
    tn = int(((y == 0) & (flag == 0)).sum())
    fp = int(((y == 0) & (flag == 1)).sum())
    recall = float(recall_score(y, flag, zero_division=0))
    return {
        "accuracy": float(accuracy_score(y, flag)),
        "precision": float(precision_score(y, flag, zero_division=0)),
        "recall": recall,
        "f1": float(f1_score(y, flag, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probability)),
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
        "true_positive_rate": recall,
        "true_negative_rate": tn / (tn + fp) if tn + fp else 0.0,
        "false_positive_rate": fp / (tn + fp) if tn + fp else 0.0,
        "false_negative_rate": 1.0 - recall,
    }


def model_quality(current: pd.DataFrame, label: str, threshold: float) -> tuple[Section | None, dict[str, Any]]:
    """ClassificationPreset on the labelled current rows, high_risk = probability >= threshold.

    Evidently derives labels from the probability column when it has one (at 0.5 unless told),
    so the model's own threshold is passed as probas_threshold; the resulting flags are the
    model's high_risk column, and every figure is checked against scikit-learn.
    """
    from evidently import BinaryClassification, Report
    from evidently.presets import ClassificationPreset

    rows = current[current[label].notna()]
    y = rows[label].astype("int64").to_numpy()
    p = rows["probability"].astype("float64").to_numpy()
    flag = rows["high_risk"].astype("int64").to_numpy()
    base: dict[str, Any] = {"threshold": threshold, "rows_with_label": int(y.size),
                            "rows_without_label": int(current.shape[0] - y.size)}
    if y.size == 0 or np.unique(y).size < 2:
        return None, {**base, "available": False, "reason": "the monitored window needs both label values"}
    if not np.array_equal(flag, (p >= threshold).astype(np.int64)):
        raise MonitorError("high_risk is not probability >= the model threshold")
    frame = pd.DataFrame({"target": y, "prediction": flag, "probability": p})
    definition = _definition(["probability"], ["target", "prediction"], BinaryClassification(
        target="target", prediction_labels="prediction", prediction_probas="probability"))
    snapshot = Report([ClassificationPreset(probas_threshold=threshold)]).run(_dataset(frame, definition), None)
    evidently: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        name = _EVIDENTLY_QUALITY.get(metric["config"].get("type", "").rsplit(":", 1)[-1])
        if name is not None and not isinstance(metric["value"], dict):
            evidently[name] = float(metric["value"])
    reference = sklearn_quality(y, flag, p)
    differences = {k: abs(v - reference[k]) for k, v in evidently.items()}
    worst = max(differences.values(), default=0.0)
    if worst > QUALITY_TOLERANCE or not {"recall", "precision"} <= set(evidently):
        raise MonitorError(f"Evidently's classification metrics disagree with scikit-learn: {differences}")
    summary = {
        **base,
        "available": True,
        "metrics": reference,
        "evidently": evidently,
        "max_abs_difference_vs_sklearn": worst,
        "positives": int(y.sum()),
        "flagged": int(flag.sum()),
    }
    return Section("Model quality on the monitored window (labels known)", snapshot), summary


def combined_html(sections: Sequence[Section]) -> str:
    """One self-contained Evidently page (scripts inlined) with one group per snapshot.

    Uses the snapshot's widgets (Evidently 0.7.23 internals, pinned in pyproject) so that the
    drift, prediction-drift and quality reports open as one file.
    """
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    widgets = [group_widget(title=s.title, widgets=list(s.snapshot._widgets) + list(s.snapshot._tests_widgets))
               for s in sections]
    html: str = render_widgets(widgets, as_iframe=False)
    return stable_ids(html)


_RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                        r"|(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def stable_ids(html: str) -> str:
    """Evidently names widgets and metrics with fresh uuids: number them in order of first appearance
    instead (same shape, every reference kept), so the same data gives the same bytes."""
    mapping: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        token = match.group(0)
        if token not in mapping:
            n = f"{len(mapping) + 1:032x}"
            mapping[token] = f"{n[:8]}-{n[8:12]}-{n[12:16]}-{n[16:20]}-{n[20:]}" if "-" in token else n
        return mapping[token]

    return _RANDOM_ID.sub(renumber, html)
