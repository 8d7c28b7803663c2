"""Report layer: the dashboard on the session's small project (tests/conftest.py).

`run_report` writes the dashboard into the project it renders, so each module renders a copy of
its own (`report_project`) and the shared build stays read-only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import Paths
from tests.support.shared import copy_tree


@pytest.fixture(scope="module")
def report_project(small_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """This module's copy of the small project (warehouse, truth and every stage output)."""
    return Paths(copy_tree(small_project, tmp_path_factory.mktemp("report-project")))
