"""Warehouse params, dbt arguments and the statistics of the figures (no dbt run)."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.config import Params, Paths
from pipelines.warehouse import (
    WarehouseParams,
    dbt_args,
    ratio_independent,
    ratio_to_total,
    wilson_interval,
)


def test_defaults_and_yaml_section() -> None:
    assert Params().warehouse == WarehouseParams()
    params = Params.model_validate({"warehouse": {"data_end_date": "2023-12-31", "readmission_window_days": 28}})
    wp = params.warehouse
    assert wp.data_end_date == date(2023, 12, 31)
    assert wp.readmission_window_days == 28
    assert wp.dbt_vars() == {
        "data_start_date": "2021-01-01", "data_end_date": "2023-12-31", "lookback_days": 365,
        "readmission_window_days": 28, "min_cell_patients": 10, "transfer_gap_days": 1, "minor_age": 18,
    }


@pytest.mark.parametrize("bad", [{"readmission_window_days": 0}, {"unknown": 1}, {"data_end_date": "soon"}])
def test_bad_section_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="warehouse"):
        Params.model_validate({"warehouse": bad})


def test_dbt_args_pass_absolute_locations(tmp_path: Path) -> None:
    args = dbt_args("build", Paths(tmp_path), WarehouseParams())
    assert args[0] == "build"
    assert args[args.index("--target") + 1] == "local"
    assert args[args.index("--project-dir") + 1] == str((tmp_path / "dbt").resolve())
    dbt_vars = json.loads(args[args.index("--vars") + 1])
    assert dbt_vars["clean_dir"] == str((tmp_path / "data" / "clean").resolve())
    assert dbt_vars["data_end_date"] == "2024-12-31"


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(2, 10)
    assert (lo, hi) == pytest.approx((0.0567, 0.5098), abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_rate_ratios() -> None:
    # A sub-population with the whole's rate has ratio 1 and a CI around it.
    ratio, lo, hi = ratio_to_total(100, 1000, 1000, 10000)
    assert ratio == pytest.approx(1.0)
    assert lo < 1 < hi
    # The overlap narrows the interval compared with two independent groups of the same sizes.
    _, ilo, ihi = ratio_independent(100, 1000, 1000, 10000)
    assert hi - lo < ihi - ilo
    ratio, lo, hi = ratio_independent(30, 100, 10, 100)
    assert ratio == pytest.approx(3.0)
    assert 1 < lo < 3 < hi
