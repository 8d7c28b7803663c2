"""Typed hand-offs: the metrics files a stage writes and another stage reads, one reader each.

reports/metrics/evaluate.json     written by evaluate (`write_evaluation`); promote reads an
                                  `Evaluation` (`read_evaluation`): the version evaluated and the
                                  forest's test recall / precision
reports/metrics/monitoring.json   written by monitor; promote reads a `MonitoringSummary`
                                  (`read_monitoring_summary`): the department recall ratio
reports/monitoring/fairness.json  written by monitor; promote reads the version monitored
                                  (`read_monitored_version`)

models/model_meta.json and models/model.joblib are in pipelines/model/artifacts.py. A reader
refuses a file it cannot use with a HandoffError (a PipelineInputError: one line from the CLI)
naming the file, the key and the stage to re-run; a missing file is a MissingInputError.
The writers keep the bytes the stages always wrote (pipelines/metrics_io: sorted keys, indent 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import metrics_io
from pipelines.errors import MissingInputError, PipelineInputError

__all__ = ["Evaluation", "HandoffError", "MonitoringSummary", "read_evaluation", "read_monitored_version",
           "read_monitoring_summary", "read_object", "write_evaluation"]


class HandoffError(PipelineInputError):
    """A stage's output file lacks a key another stage reads, or holds a value of the wrong kind."""


def read_object(path: Path, what: str, stage: str, error: type[PipelineInputError] = HandoffError
                ) -> dict[str, Any]:
    """The JSON object `stage` wrote at `path`: MissingInputError when absent, `error` naming the
    file when it is not JSON or not an object."""
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found (run the {stage} stage)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc}; re-run the {stage} stage)") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__} (re-run the {stage} stage)")
    return data


def _number(path: Path, key: str, value: object, stage: str) -> float | None:
    """A JSON number (or null) as a float; HandoffError naming the key otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HandoffError(f"{path}: '{key}' is {value!r}, expected a number or null (re-run the {stage} stage)")
    return float(value)


# ---- evaluate.json ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """What promote reads of reports/metrics/evaluate.json."""

    model_version: str  # the registered version evaluate scored
    rf_recall: float | None  # the forest on the test window, at its threshold (None: not in the file)
    rf_precision: float | None


def write_evaluation(path: Path, result: dict[str, Any]) -> None:
    """reports/metrics/evaluate.json (evaluate's result, already rounded)."""
    metrics_io.write_json(path, result)


def read_evaluation(path: Path) -> Evaluation:
    data = read_object(path, "evaluation", "evaluate")
    if "model_version" not in data:
        raise HandoffError(f"{path}: no key 'model_version' (re-run the evaluate stage)")
    rf = data.get("rf", {})
    if not isinstance(rf, dict):
        raise HandoffError(f"{path}: 'rf' is {type(rf).__name__}, expected an object (re-run the evaluate stage)")
    return Evaluation(model_version=str(data["model_version"]),
                      rf_recall=_number(path, "rf.recall", rf.get("recall"), "evaluate"),
                      rf_precision=_number(path, "rf.precision", rf.get("precision"), "evaluate"))


# ---- monitoring.json and fairness.json --------------------------------------------------------------

@dataclass(frozen=True)
class MonitoringSummary:
    """What promote reads of reports/metrics/monitoring.json."""

    department_recall_ratio: float | None  # None: fewer than 2 departments above the suppression rule
    # its 95% bootstrap interval; None when monitor ran without replicates (or an older summary)
    department_recall_ratio_ci: tuple[float, float] | None = None


def read_monitoring_summary(path: Path) -> MonitoringSummary:
    data = read_object(path, "monitoring summary", "monitor")
    if "department_recall_ratio" not in data:
        raise HandoffError(f"{path}: no key 'department_recall_ratio' (re-run the monitor stage)")
    low = _number(path, "department_recall_ratio_ci_low", data.get("department_recall_ratio_ci_low"), "monitor")
    high = _number(path, "department_recall_ratio_ci_high", data.get("department_recall_ratio_ci_high"), "monitor")
    return MonitoringSummary(_number(path, "department_recall_ratio", data["department_recall_ratio"], "monitor"),
                             None if low is None or high is None else (low, high))


def read_monitored_version(path: Path) -> str:
    """The registered version reports/monitoring/fairness.json is about (its "model" block)."""
    data = read_object(path, "fairness report", "monitor")
    model = data.get("model")
    if not isinstance(model, dict) or "version" not in model:
        raise HandoffError(f"{path}: no key 'model.version' (re-run the monitor stage)")
    return str(model["version"])
