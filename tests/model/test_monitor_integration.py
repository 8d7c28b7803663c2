"""The real chain at small scale with the simulator's drift on: monitor sees age and cost move.

generate -> clean -> warehouse -> features -> train (2 trials) -> monitor, in a temporary root.
Skipped while a stage module of the chain is not importable yet.
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Params, Paths

REPO = Path(__file__).resolve().parents[2]
CHAIN = (
    ("pipelines.generate", "run_generate"),
    ("pipelines.clean", "run_clean"),
    ("pipelines.warehouse", "run_warehouse"),
    ("pipelines.features", "run_features"),
    ("pipelines.train", "run_train"),
)


def _stage(module: str, name: str) -> Any:
    """The stage function (a broken import fails the test, never skips it)."""
    return getattr(importlib.import_module(module), name)


def _call(func: Any, paths: Paths, params: Params) -> Any:
    """Stages take (paths, params); clean may take its own section (CleanParams)."""
    second = list(inspect.signature(func).parameters.values())[1]
    kwargs = {"progress": False} if "progress" in inspect.signature(func).parameters else {}
    section = params.clean if "CleanParams" in str(second.annotation) else params
    return func(paths, section, **kwargs)


@pytest.mark.slow
def test_chain_with_drift_enabled_flags_age_and_cost_not_department(tmp_path):
    stages = [_stage(m, f) for m, f in CHAIN]
    monitor = importlib.import_module("pipelines.monitor")
    shutil.copytree(REPO / "dbt", tmp_path / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    params = Params.model_validate({
        "generate": {"patients": 6000, "drift": {"enabled": True}},
        "train": {"n_trials": 2, "cv_folds": 2, "optuna_plots": False, "n_jobs": 2,
                  "search": {"n_estimators": [20, 40], "max_depth": [4, 8]}},
    })
    paths = Paths(tmp_path)
    for func in stages:
        _call(func, paths, params)

    summary = monitor.run_monitor(paths, params)
    drift = json.loads((paths.reports / "monitoring" / "drift.json").read_text(encoding="utf-8"))
    columns = drift["data_drift"]["columns"]
    table = {c: (v["method"], v["statistic"], v["threshold"], v["drifted"]) for c, v in columns.items()}
    assert columns["age"]["drifted"] is True, table
    assert columns["stay_cost"]["drifted"] is True, table
    assert columns["department"]["drifted"] is False, table
    assert summary["n_drifted_columns"] >= 2
    assert "department_recall_ratio" in summary
    for rel in ("drift.html", "fairness.json", "fairness.html"):
        assert (paths.reports / "monitoring" / rel).exists()
