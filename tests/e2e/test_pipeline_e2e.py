"""End to end: `dvc repro` of the whole pipeline at a small scale in a temporary copy.

Runs the real DVC, the real stages and their real outputs; then checks the figures that
matter and that a second `dvc repro` has nothing to do.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.project_copy import dvc as _dvc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repro(reproduced: tuple[Path, subprocess.CompletedProcess[str]]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    return reproduced  # the shared `dvc repro` of tests/e2e/conftest.py


def test_dvc_repro_succeeds(repro: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, result = repro
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_cleaning_metric_accounts_for_every_row(repro: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = repro
    metrics = json.loads((root / "reports" / "metrics" / "cleaning.json").read_text())
    for table, m in metrics["tables"].items():
        assert m["raw_rows"] == m["clean_rows"] + m["quarantined_rows"] + m["duplicates_dropped"], table
        assert m["clean_rows"] > 0, table
    assert metrics["tables"]["stays"]["quarantined_rows"] > 0


def test_second_repro_has_nothing_to_do(repro: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, first = repro
    assert first.returncode == 0
    again = _dvc(root, "repro")
    assert again.returncode == 0
    assert "Data and pipelines are up to date" in again.stdout, again.stdout
    status = _dvc(root, "status")
    assert "up to date" in status.stdout, status.stdout


def test_warehouse_and_features_are_built(repro: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    import polars as pl

    from pipelines.contracts import FEATURE_SCHEMA

    root, _ = repro
    figures = json.loads((root / "reports" / "metrics" / "warehouse.json").read_text())
    assert 0.05 < figures["readmission_rate"] < 0.2
    assert figures["index_stays"] > 1000
    features = pl.read_parquet(root / "data" / "features" / "ml_readmission_features.parquet")
    assert dict(features.schema) == FEATURE_SCHEMA
    assert features.height == figures["index_stays"]
