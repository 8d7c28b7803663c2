"""Features stage: export the dbt mart ml_readmission_features to Parquet.

Reads the warehouse with a read-only DuckDB connection, casts to contracts.FEATURE_SCHEMA
exactly (names, order, dtypes), sorts by stay_id and writes
data/features/ml_readmission_features.parquet with fixed writer options, so the same
warehouse gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipelines import atomic, contracts
from pipelines.config import DuckDBSettings, Params, Paths
from pipelines.duckdb_settings import connect_read_only
from pipelines.errors import PipelineInputError
from pipelines.guards import MIN_FEATURE_ROWS, require_rows

FEATURES_FILE = "ml_readmission_features.parquet"


class FeaturesError(PipelineInputError, RuntimeError):
    """The warehouse is missing or its feature mart does not match the contract."""


def read_feature_mart(
    warehouse: Path, settings: DuckDBSettings | None = None, root: Path | None = None
) -> pl.DataFrame:
    """The feature mart as a frame with exactly contracts.FEATURE_SCHEMA, sorted by stay_id; read
    under the DuckDB memory limit of `settings` (spill directory under `root`, default the cwd)."""
    import duckdb

    if not warehouse.is_file():
        raise FeaturesError(f"{warehouse}: warehouse not found (run the warehouse stage first)")
    con = connect_read_only(warehouse, settings or DuckDBSettings(), root or Path.cwd())
    try:
        try:
            actual = [r[0] for r in con.execute(f"describe {contracts.FEATURES_RELATION}").fetchall()]
        except duckdb.Error as exc:
            raise FeaturesError(f"{warehouse}: no {contracts.FEATURES_RELATION} ({exc})") from exc
        expected = list(contracts.FEATURE_SCHEMA)
        if sorted(actual) != sorted(expected):
            missing = sorted(set(expected) - set(actual))
            extra = sorted(set(actual) - set(expected))
            raise FeaturesError(
                f"{contracts.FEATURES_RELATION} does not match contracts.FEATURE_SCHEMA: "
                f"missing {missing}, unexpected {extra}"
            )
        columns = ", ".join(f'"{c}"' for c in expected)
        frame = con.sql(
            f"select {columns} from {contracts.FEATURES_RELATION} order by {contracts.FEATURE_KEY}"
        ).pl()
    finally:
        con.close()
    return conform(frame)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to FEATURE_SCHEMA (strict: a value that does not fit raises) and sort by the key."""
    try:
        out = frame.select(
            pl.col(name).cast(dtype, strict=True) for name, dtype in contracts.FEATURE_SCHEMA.items()
        )
    except pl.exceptions.InvalidOperationError as exc:
        raise FeaturesError(f"feature mart does not cast to contracts.FEATURE_SCHEMA: {exc}") from exc
    if out[contracts.FEATURE_KEY].is_duplicated().any():
        raise FeaturesError(f"feature mart: duplicated {contracts.FEATURE_KEY}")
    return out.sort(contracts.FEATURE_KEY)


def write_features(frame: pl.DataFrame, path: Path) -> None:
    """Deterministic Parquet: one row group, fixed compression, no statistics-dependent layout."""
    with atomic.atomic_file(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True, row_group_size=1 << 30)


def run_features(paths: Paths, params: Params) -> dict[str, Any]:
    """Export the feature mart; returns row count, label rate and date range."""
    # The feature definitions live in dbt (params reach them through the warehouse); only the
    # DuckDB resources (memory limit, spill directory) are read here.
    frame = read_feature_mart(paths.warehouse, params.warehouse, paths.root)
    require_rows(frame.height, MIN_FEATURE_ROWS, f"{paths.warehouse} {contracts.FEATURES_RELATION}",
                 "too few index stays: see reports/metrics/warehouse.json and cleaning.json")
    out = paths.features / FEATURES_FILE
    write_features(frame, out)
    label = frame[contracts.FEATURE_LABEL]
    dates = frame[contracts.FEATURE_SPLIT_DATE]
    return {
        "path": str(out),
        "rows": frame.height,
        "columns": frame.width,
        "readmission_rate": round(float(label.mean()), 4) if frame.height else None,  # type: ignore[arg-type]
        "discharge_date_min": str(dates.min()) if frame.height else None,
        "discharge_date_max": str(dates.max()) if frame.height else None,
    }
