"""params.yaml section `warehouse`: the readmission definition, publication rules, DuckDB resources.

The resource keys (`memory_limit`, `threads`, `temp_directory`) go to dbt-duckdb's profile through
SNDS_DUCKDB_* env vars handed to the dbt run, and to every read-only connection
(pipelines/duckdb_settings.py). Above the memory limit DuckDB spills sorts, joins and aggregates to
`temp_directory` instead of growing: that is what keeps the region-scale build inside RAM.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from pipelines.config.base import Strict

# DuckDB's own size syntax: a number and a unit (KB..TB, KiB..TiB), or a percentage of RAM.
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(([KMGT]i?B)|%)\s*$", re.IGNORECASE)

ENV_MEMORY_LIMIT = "SNDS_DUCKDB_MEMORY_LIMIT"
ENV_THREADS = "SNDS_DUCKDB_THREADS"
ENV_TEMP_DIRECTORY = "SNDS_DUCKDB_TEMP_DIRECTORY"


class DuckDBSettings(Strict):
    """The resource keys of the `warehouse` section."""

    memory_limit: str = "6GB"  # DuckDB's buffer-manager cap; above it operators spill to disk
    threads: int = Field(2, ge=1)  # DuckDB worker threads (also dbt's model concurrency)
    temp_directory: str = "data/tmp/duckdb"  # spill files; relative to the project root

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE.match(value):
            raise ValueError(f"memory_limit {value!r} is not a DuckDB size such as '6GB', '512MB' or '80%'")
        return value.replace(" ", "")

    def temp_path(self, root: Path) -> Path:
        """The spill directory as an absolute path (relative values are under the project root)."""
        path = Path(self.temp_directory)
        return (path if path.is_absolute() else root / path).resolve()

    def environ(self, root: Path) -> dict[str, str]:
        """The env vars dbt/profiles.yml reads for the `local` target's DuckDB settings."""
        return {
            ENV_MEMORY_LIMIT: self.memory_limit,
            ENV_THREADS: str(self.threads),
            ENV_TEMP_DIRECTORY: str(self.temp_path(root)),
        }

    def connect_config(self, root: Path, threads: int | None = None) -> dict[str, Any]:
        """duckdb.connect(config=...) for this project; `threads` overrides (1 = same float sums)."""
        temp = self.temp_path(root)
        temp.mkdir(parents=True, exist_ok=True)
        return {
            "memory_limit": self.memory_limit,
            "threads": threads or self.threads,
            "temp_directory": str(temp),
        }


class WarehouseParams(DuckDBSettings):
    """The readmission definition and publication rules, and (inherited) the DuckDB resources."""

    data_start_date: date = date(2021, 1, 1)  # first day covered by the extract
    data_end_date: date = date(2024, 12, 31)  # last day covered by the extract (censoring)
    lookback_days: int = Field(365, ge=0)  # history an index stay needs before its admission
    readmission_window_days: int = Field(30, gt=0)  # readmission within 1..N days of discharge
    min_cell_patients: int = Field(10, ge=1)  # smaller published cells are suppressed
    transfer_gap_days: int = Field(1, ge=0)  # transfer + readmission within N days = one episode
    minor_age: int = Field(18, ge=0)  # younger at admission: not an index stay
    # Patient-bootstrap replicates of the department intervals (warehouse.json and the dashboard;
    # seeded with the top-level seed). Not a dbt var: the bootstrap runs in Python.
    bootstrap_replicates: int = Field(1000, ge=100)

    def dbt_vars(self) -> dict[str, Any]:
        return {
            "data_start_date": self.data_start_date.isoformat(),
            "data_end_date": self.data_end_date.isoformat(),
            "lookback_days": self.lookback_days,
            "readmission_window_days": self.readmission_window_days,
            "min_cell_patients": self.min_cell_patients,
            "transfer_gap_days": self.transfer_gap_days,
            "minor_age": self.minor_age,
        }
