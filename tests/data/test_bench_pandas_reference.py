"""The pandas reference (benchmarks/pandas_clean.py) gives what `clean` gives on the same raw files.

Same clean tables (values and types), the same quarantined lines with the same reasons, and
the same accounting per table and per file, on a small generated extract made extra dirty so
that every rule fires. The benchmark's speed ratio is only meaningful because of this test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.clean import TABLE_ORDER
from pipelines.config import Paths
from pipelines.contracts import CLEAN_SCHEMAS
from tests.data.dirty_extract import DIRTY_CHUNK_PATIENTS, DIRTY_PATIENTS, dirty_params

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import pandas_clean


@pytest.fixture(scope="module")
def both(dirty_extract_root: Path) -> tuple[Path, Any]:
    root = dirty_extract_root
    params = dirty_params(DIRTY_PATIENTS, DIRTY_CHUNK_PATIENTS)
    period = params.clean.extract
    ref = pandas_clean.run(Paths(root).raw, pandas_clean.Params(start=period.start_date, end=period.end_date))
    return root, ref


def _polars(df: pd.DataFrame, table: str) -> pl.DataFrame:
    schema = CLEAN_SCHEMAS[table]
    return pl.from_pandas(df).select(pl.col(c).cast(t) for c, t in schema.items())


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_same_clean_table(both: tuple[Path, Any], table: str) -> None:
    root, (cleans, _, _) = both
    ours = pl.read_parquet(root / "data" / "clean" / f"{table}.parquet")
    assert ours.height > 0
    assert_frame_equal(_polars(cleans[table], table), ours)


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_same_quarantined_lines_and_reasons(both: tuple[Path, Any], table: str) -> None:
    root, (_, quarantines, _) = both
    cols = ["source_file", "line_number", "reason"]
    ours = pl.read_parquet(root / "data" / "quarantine" / f"{table}.parquet").select(cols).sort(cols)
    ref = pl.from_pandas(quarantines[table][cols]).cast({"line_number": pl.Int64}).sort(cols)
    assert_frame_equal(ref, ours)


def test_every_rule_was_exercised(both: tuple[Path, Any]) -> None:
    """The comparison means something only if the dirty rows reach many different rules."""
    _, (_, _, metrics) = both
    reasons = {r for m in metrics.values() for r, n in m["quarantine_reasons"].items() if n}
    assert {"malformed_line", "missing_cost", "impossible_age", "negative_cost", "unknown_finess",
            "unknown_stay", "impossible_birth_year", "discharge_before_admission"} <= reasons


@pytest.mark.parametrize("table", TABLE_ORDER)
def test_same_accounting(both: tuple[Path, Any], table: str) -> None:
    root, (_, _, metrics) = both
    ours = json.loads((root / "reports" / "metrics" / "cleaning.json").read_text())["tables"][table]
    ref = metrics[table]
    for key in ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped", "linked_rows_rejected"):
        assert ref[key] == ours[key], key
    assert ref["quarantine_reasons"] == {r: n for r, n in ours["quarantine_reasons"].items() if n}
    assert ref["repairs"] == ours["repairs"]
    assert ref["cascade"] == ours["cascade"]
    counts = ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped")
    assert ref["files"] == {f: {k: a[k] for k in counts} for f, a in ours["files"].items()}
    assert ref["raw_rows"] == ref["clean_rows"] + ref["quarantined_rows"] + ref["duplicates_dropped"]
