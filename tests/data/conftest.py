"""Data layer: generate, clean, the dbt/DuckDB warehouse, the truth round trip, data contracts.

`dirty_extract_root`: one generated extract with every dirt rate x4 (5,000 patients), cleaned
without a mass-loss ceiling, built once per run and read-only; the truth round trip follows every
corruption through it and the pandas reference of benchmarks/ is compared with `clean` on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.dirty_extract import DIRTY_CHUNK_PATIENTS, DIRTY_PATIENTS, generate_and_clean
from tests.support.shared import build_once


@pytest.fixture(scope="session")
def dirty_extract_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project root holding data/raw, data/truth, data/clean, data/quarantine of the dirty extract."""
    def build(root: Path) -> None:
        generate_and_clean(root, DIRTY_PATIENTS, DIRTY_CHUNK_PATIENTS)

    return build_once(tmp_path_factory, "dirty-extract", build)
