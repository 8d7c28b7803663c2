"""The typed hand-off files (pipelines/model/handoffs.py): what promote reads of evaluate and monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import metrics_io
from pipelines.errors import MissingInputError, PipelineInputError
from pipelines.model.handoffs import (
    Evaluation,
    HandoffError,
    MonitoringSummary,
    read_evaluation,
    read_monitored_version,
    read_monitoring_summary,
    write_evaluation,
)

RESULT = {"model_version": "3", "rf": {"recall": 0.737792, "precision": 0.242752, "tp": 695, "threshold": 0.529355},
          "lace": {"cutoff": 10, "recall": 0.5}, "permutation_importance": {"age": 0.12921, "sex": -8.4e-05}}


def _write(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def test_evaluation_round_trip_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "evaluate.json"
    write_evaluation(path, RESULT)
    assert path.read_text(encoding="utf-8") == metrics_io.json_text(RESULT)  # sorted keys, indent 2
    assert list(json.loads(path.read_text())) == sorted(RESULT)
    assert read_evaluation(path) == Evaluation(model_version="3", rf_recall=0.737792, rf_precision=0.242752)


def test_evaluation_without_forest_block(tmp_path: Path) -> None:
    evaluation = read_evaluation(_write(tmp_path / "evaluate.json", {"model_version": 12}))
    assert evaluation == Evaluation(model_version="12", rf_recall=None, rf_precision=None)


def test_evaluation_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "evaluate.json"
    with pytest.raises(MissingInputError, match=r"evaluate\.json: evaluation not found \(run the evaluate stage\)"):
        read_evaluation(path)
    _write(path, {"rf": {"recall": 0.5}})
    with pytest.raises(HandoffError, match=r"evaluate\.json: no key 'model_version' \(re-run the evaluate stage\)"):
        read_evaluation(path)
    _write(path, {"model_version": "1", "rf": [0.5]})
    with pytest.raises(HandoffError, match=r"evaluate\.json: 'rf' is list, expected an object"):
        read_evaluation(path)
    _write(path, {"model_version": "1", "rf": {"recall": "high", "precision": 0.2}})
    with pytest.raises(HandoffError, match=r"evaluate\.json: 'rf\.recall' is 'high', expected a number or null"):
        read_evaluation(path)
    _write(path, {"model_version": "1", "rf": {"recall": True}})
    with pytest.raises(HandoffError, match=r"'rf\.recall' is True"):
        read_evaluation(path)
    path.write_text('{"model_version": ', encoding="utf-8")
    with pytest.raises(HandoffError, match=r"evaluate\.json: not valid JSON"):
        read_evaluation(path)
    _write(path, ["model_version"])
    with pytest.raises(HandoffError, match=r"evaluate\.json: expected a JSON object, found list"):
        read_evaluation(path)
    assert issubclass(HandoffError, PipelineInputError)


def test_monitoring_summary(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.json"
    assert read_monitoring_summary(_write(path, {"department_recall_ratio": 0.83873, "drift_share": 0.1})) == \
        MonitoringSummary(0.83873)
    assert read_monitoring_summary(_write(path, {"department_recall_ratio": None})).department_recall_ratio is None
    assert read_monitoring_summary(_write(path, {"department_recall_ratio": 1})).department_recall_ratio == 1.0
    _write(path, {"drift_share": 0.1})
    with pytest.raises(HandoffError, match=r"monitoring\.json: no key 'department_recall_ratio' \(re-run the monitor"):
        read_monitoring_summary(path)
    _write(path, {"department_recall_ratio": "0.8"})
    with pytest.raises(HandoffError, match=r"'department_recall_ratio' is '0\.8', expected a number or null"):
        read_monitoring_summary(path)
    with pytest.raises(MissingInputError, match=r"absent\.json: monitoring summary not found \(run the monitor"):
        read_monitoring_summary(tmp_path / "absent.json")


def test_monitored_version(tmp_path: Path) -> None:
    path = tmp_path / "fairness.json"
    assert read_monitored_version(_write(path, {"model": {"version": 4, "threshold": 0.5}, "groups": {}})) == "4"
    for broken in ({"groups": {}}, {"model": "4"}, {"model": {"threshold": 0.5}}):
        _write(path, broken)
        with pytest.raises(HandoffError, match=r"fairness\.json: no key 'model\.version' \(re-run the monitor stage\)"):
            read_monitored_version(path)
