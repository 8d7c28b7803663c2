"""Refuse empty or near-empty inputs before a stage builds anything on them.

A run where clean quarantined (nearly) everything must not go on to a warehouse and a
feature mart of zero stays that look like success.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipelines.errors import PipelineInputError

# Below these counts a stage stops. Near-empty outputs of a dirty extract are stopped earlier,
# by clean's ceiling on the quarantined share (clean.max_quarantine_share).
MIN_CLEAN_STAYS = 1
MIN_FEATURE_ROWS = 1


class EmptyInputError(PipelineInputError, ValueError):
    """A stage's input holds no (or almost no) rows."""


def parquet_rows(path: Path) -> int:
    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def require_rows(count: int, minimum: int, what: str, hint: str) -> None:
    """Raise EmptyInputError naming the input and the count when count < minimum."""
    if count < minimum:
        raise EmptyInputError(f"{what}: {count} rows, fewer than the {minimum} this stage needs ({hint})")


def check_clean_stays(clean_dir: Path) -> None:
    """The warehouse needs clean stays: refuse an empty or near-empty clean stays table."""
    path = clean_dir / "stays.parquet"
    require_rows(parquet_rows(path), MIN_CLEAN_STAYS, str(path),
                 "see reports/metrics/cleaning.json and data/quarantine/stays.parquet")
