"""The promote stage's steps one at a time, with a recording stand-in for the MLflow client.

tests/test_promote.py runs the whole stage against a real registry; here the alias swap, the tags,
the reports and the file checks are tested alone (no MLflow, no model).
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

import pytest
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from pipelines import interrupts
from pipelines.config import Params, Paths
from pipelines.model import data as fdata
from pipelines.model.artifacts import META_FILE, ModelMeta, write_meta
from pipelines.model.handoffs import Evaluation
from pipelines.promote import (
    Aliases,
    Challenge,
    Comparison,
    Gates,
    PromoteError,
    Registry,
    ScoringWindow,
    decision_report,
    read_challenge,
    swap_aliases,
    tag_decision,
    unchanged_report,
)

NAME = "idf-readmission-rf"
PARAMS = Params()
PP, TP = PARAMS.promote, PARAMS.train


@dataclass
class RecordingClient:
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.calls.append(("alias", name, alias, version))

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.calls.append(("tag", name, version, key, value))


def _mv(version: str) -> ModelVersion:
    return ModelVersion(NAME, version, creation_timestamp=0)


def _registry(champion: str | None, previous: str | None = None) -> tuple[Registry, RecordingClient]:
    client = RecordingClient()
    registry = Registry(cast(MlflowClient, client), _mv("5"), None if champion is None else _mv(champion),
                        None if previous is None else _mv(previous))
    return registry, client


def test_promoted_challenger_takes_champion_and_old_champion_becomes_previous() -> None:
    registry, client = _registry(champion="4", previous="2")
    aliases = swap_aliases(registry, PP, NAME, "5", promoted=True)
    assert aliases == Aliases(champion="5", previous="4")
    assert client.calls == [("alias", NAME, PP.previous_alias, "4"), ("alias", NAME, PP.champion_alias, "5")]


def test_first_model_promoted_keeps_previous() -> None:
    registry, client = _registry(champion=None, previous="2")
    assert swap_aliases(registry, PP, NAME, "5", promoted=True) == Aliases(champion="5", previous="2")
    assert client.calls == [("alias", NAME, PP.champion_alias, "5")]  # no previous to move


def test_refused_challenger_moves_no_alias() -> None:
    registry, client = _registry(champion="4", previous="2")
    assert swap_aliases(registry, PP, NAME, "5", promoted=False) == Aliases(champion="4", previous="2")
    assert client.calls == []


def test_a_swallowed_interrupt_stops_the_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interrupts, "_pending", [signal.SIGINT])  # a Ctrl-C Python swallowed earlier
    registry, client = _registry(champion="4")
    with pytest.raises(KeyboardInterrupt):
        swap_aliases(registry, PP, NAME, "5", promoted=True)
    assert client.calls == []  # no alias moved


def test_decision_tags_on_challenger_and_incumbent() -> None:
    registry, client = _registry(champion="4")
    tag_decision(registry, NAME, "5", "refused", ["pass a: x", "FAIL b: y"])
    assert client.calls == [
        ("tag", NAME, "5", "promotion_decision", "refused"),
        ("tag", NAME, "5", "promotion_reasons", "pass a: x | FAIL b: y"),
        ("tag", NAME, "5", "promotion_compared_with", "4"),
        ("tag", NAME, "4", "last_challenger_version", "5"),
        ("tag", NAME, "4", "last_challenge_decision", "refused"),
        ("tag", NAME, "4", "last_challenge_reasons", "pass a: x | FAIL b: y"),
    ]
    first, first_client = _registry(champion=None)
    tag_decision(first, NAME, "5", "promoted", ["pass a: x"])
    assert [c[3] for c in first_client.calls] == ["promotion_decision", "promotion_reasons", "promotion_compared_with"]
    assert first_client.calls[-1][-1] == "none (first model)"


def test_reports() -> None:
    registry, _ = _registry(champion="5", previous="3")
    unchanged = unchanged_report(PP, TP, "5", registry)
    assert (unchanged["decision"], unchanged["champion_version"], unchanged["previous_version"]) == \
        ("unchanged", "5", "3")
    assert (unchanged["gates"], unchanged["metrics"], unchanged["test_window"]) == ({}, {}, None)

    gates = Gates()
    gates.add("objective", True, "recall 0.7 >= 0.6")
    gates.add("fairness", False, "ratio 0.5 < 0.8")
    window = ScoringWindow(date(2024, 4, 1), _window_frame())
    comparison = Comparison(window, {"recall": 0.7}, None, {"recall": 0.5}, gates)
    assert comparison.decision == "refused"
    challenge = Challenge("5", Evaluation("5", 0.7, 0.3), 0.5)
    report = decision_report(PP, TP, challenge, comparison, Aliases("4", None))
    assert report["reasons"] == ["pass objective: recall 0.7 >= 0.6", "FAIL fairness: ratio 0.5 < 0.8"]
    assert report["metrics"]["department_recall_ratio"] == 0.5
    assert report["test_window"] == {"start": "2024-04-01", "rows": 3, "positives": 1}
    assert set(report) == set(unchanged)  # one schema for every decision
    assert (report["champion_version"], report["previous_version"]) == ("4", None)


def _window_frame() -> Any:
    import polars as pl

    return pl.DataFrame({fdata.LABEL: [0, 1, 0]})


def _meta(name: str, version: str) -> ModelMeta:
    return ModelMeta(
        model_name=name, version=version, model_uri=f"models:/{name}/{version}", experiment="e",
        threshold=0.5, threshold_rule="min_precision", min_precision=0.25, numeric_features=("age",),
        categorical_features=("sex",), train_end=date(2023, 10, 1), valid_end=date(2024, 4, 1), best_params={},
        seed=0, features_md5="m")


def _inputs(root: Path, meta: ModelMeta, evaluated: str, monitored: str, ratio: float | None) -> Paths:
    paths = Paths(root)
    for folder in (paths.models, paths.metrics, paths.reports / "monitoring"):
        folder.mkdir(parents=True, exist_ok=True)
    write_meta(paths.models / META_FILE, meta)
    (paths.metrics / "evaluate.json").write_text(json.dumps({"model_version": evaluated, "rf": {"recall": 0.7}}))
    (paths.metrics / "monitoring.json").write_text(json.dumps({"department_recall_ratio": ratio}))
    (paths.reports / "monitoring" / "fairness.json").write_text(json.dumps({"model": {"version": monitored}}))
    return paths


def test_read_challenge(tmp_path: Path) -> None:
    paths = _inputs(tmp_path, _meta(NAME, "5"), "5", "5", 0.9)
    assert read_challenge(paths, TP) == Challenge("5", Evaluation("5", 0.7, None), 0.9)
    _inputs(tmp_path, _meta(NAME, "5"), "5", "5", None)
    assert read_challenge(paths, TP).department_ratio is None


def test_read_challenge_refuses_stale_or_foreign_inputs(tmp_path: Path) -> None:
    paths = _inputs(tmp_path, _meta("another-model", "5"), "5", "5", 0.9)
    with pytest.raises(PromoteError, match=r"about model 'another-model', params train\.model_name is"):
        read_challenge(paths, TP)
    _inputs(tmp_path, _meta(NAME, "5"), "4", "5", 0.9)
    with pytest.raises(PromoteError, match=r"evaluate\.json: evaluation is about version 4, not the challenger 5"):
        read_challenge(paths, TP)
    _inputs(tmp_path, _meta(NAME, "5"), "5", "3", 0.9)
    with pytest.raises(PromoteError, match=r"fairness\.json: monitoring is about version 3, not the challenger 5"):
        read_challenge(paths, TP)
    (paths.models / META_FILE).write_text(json.dumps({"model_name": NAME, "version": "5"}))
    with pytest.raises(PromoteError, match=r"model_meta\.json: missing key\(s\) model_uri"):
        read_challenge(paths, TP)
    (paths.models / META_FILE).unlink()
    with pytest.raises(PromoteError, match=r"model_meta\.json: model metadata not found \(run the train stage\)"):
        read_challenge(paths, TP)
