"""Read-only DuckDB connections under the project's resource settings (toolkit module).

The settings are the `warehouse` section's memory_limit, threads and temp_directory
(pipelines/config/warehouse.py); the warehouse figures, the features export and the dashboard
queries all open the warehouse through `connect_read_only`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.config.warehouse import DuckDBSettings


def connect_read_only(database: Path, settings: DuckDBSettings, root: Path, threads: int | None = None) -> Any:
    """A read-only DuckDB connection under the project's memory limit and spill directory."""
    import duckdb

    return duckdb.connect(str(database), read_only=True, config=settings.connect_config(root, threads))
