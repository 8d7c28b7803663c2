"""Loud failures: mass loss in clean, empty inputs to warehouse and features (exit code 2, one line)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines import contracts
from pipelines.cli import main
from pipelines.config import Params, Paths
from pipelines.guards import MIN_CLEAN_STAYS, EmptyInputError, check_clean_stays
from pipelines.warehouse import run_warehouse
from tests.support.raw_fixtures import write_raw


def test_clean_exits_2_on_mass_loss_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw(tmp_path, stays=[{"RSA_NUM": str(i), "AGE_ANN": "150"} for i in range(1, 4)])
    (tmp_path / "params.yaml").write_text("clean:\n  max_quarantine_share: 0.05\n", encoding="utf-8")
    assert main(["--root", str(tmp_path), "-q", "clean"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: clean: stays: 100.0% of 3 rows quarantined")
    assert "impossible_age 100.0% (e.g. T_MCO23B.csv line 2)" in err


def _empty_clean(root: Path) -> Paths:
    paths = Paths(root)
    paths.clean.mkdir(parents=True)
    for name, schema in contracts.CLEAN_SCHEMAS.items():
        pl.DataFrame(schema=schema).write_parquet(paths.clean / f"{name}.parquet")
    return paths


def test_warehouse_refuses_an_empty_clean_stays_table(tmp_path: Path) -> None:
    paths = _empty_clean(tmp_path)
    with pytest.raises(EmptyInputError, match=rf"stays.parquet: 0 rows, fewer than the {MIN_CLEAN_STAYS}"):
        run_warehouse(paths, Params())
    assert not paths.warehouse.exists()


def test_check_passes_at_the_minimum(tmp_path: Path) -> None:
    paths = _empty_clean(tmp_path)
    schema = contracts.CLEAN_SCHEMAS["stays"]
    rows = pl.DataFrame(schema=schema).extend(
        pl.DataFrame({"stay_id": [f"s{i}" for i in range(MIN_CLEAN_STAYS)]}).with_columns(
            [pl.lit(None, t).alias(c) for c, t in schema.items() if c != "stay_id"]).select(list(schema)))
    rows.write_parquet(paths.clean / "stays.parquet")
    check_clean_stays(paths.clean)


def test_cli_exit_code_for_empty_warehouse_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _empty_clean(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 1\n", encoding="utf-8")
    assert main(["--root", str(tmp_path), "-q", "warehouse"]) == 2
    assert f"0 rows, fewer than the {MIN_CLEAN_STAYS} this stage needs" in capsys.readouterr().err
