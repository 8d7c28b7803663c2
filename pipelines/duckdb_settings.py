"""DuckDB resource settings shared by every stage that opens the warehouse (toolkit module).

params.yaml's `warehouse` section holds `memory_limit`, `threads` and `temp_directory`. The
warehouse stage hands them to dbt-duckdb's profile (`config_options:`, read from SNDS_DUCKDB_* env
vars), so every dbt model runs under them; read-only connections (warehouse figures, features
export, dashboard queries) open through `connect_read_only`, which applies the memory limit and
the spill directory too. Above the memory limit DuckDB spills sorts, joins and aggregates to
`temp_directory` instead of growing: that is what keeps the region-scale build inside RAM.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines import config
from pipelines.config import Params

# DuckDB's own size syntax: a number and a unit (KB..TB, KiB..TiB), or a percentage of RAM.
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(([KMGT]i?B)|%)\s*$", re.IGNORECASE)

ENV_MEMORY_LIMIT = "SNDS_DUCKDB_MEMORY_LIMIT"
ENV_THREADS = "SNDS_DUCKDB_THREADS"
ENV_TEMP_DIRECTORY = "SNDS_DUCKDB_TEMP_DIRECTORY"


class DuckDBSettings(BaseModel):
    """The resource keys of params.yaml's `warehouse` section (other keys are ignored here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

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


def duckdb_settings(params: Params) -> DuckDBSettings:
    return config.section(params, "warehouse", DuckDBSettings)


def connect_read_only(database: Path, settings: DuckDBSettings, root: Path, threads: int | None = None) -> Any:
    """A read-only DuckDB connection under the project's memory limit and spill directory."""
    import duckdb

    return duckdb.connect(str(database), read_only=True, config=settings.connect_config(root, threads))
