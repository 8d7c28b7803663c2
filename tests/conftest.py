"""Fixtures shared by every layer (unit, data, model, report, e2e).

`small_project`: the session's small project, generate -> clean -> warehouse at 3,000 patients
(tests/support/report_fixtures.py) plus every stage output the report reads, built once per run
(once in all under pytest-xdist) and read-only: a test that writes gets `small_project_copy`.

Every test also gets SIGINT/SIGTERM back as they were: the CLI installs pipelines.interrupts'
handlers and leaves a received signal recorded, which must not reach the next test.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import interrupts
from tests.support import report_fixtures as rfx
from tests.support.shared import build_once, copy_tree

# Slowest layers first: the long builds start at once.
LAYER_ORDER = ("e2e", "report", "model", "data", "unit")


def _build_small_project(root: Path) -> None:
    paths = rfx.build_warehouse(root)
    rfx.write_stage_outputs(paths)


@pytest.fixture(scope="session")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared small project's root (do not write into it)."""
    return build_once(tmp_path_factory, "small-project", _build_small_project)


@pytest.fixture
def small_project_copy(small_project: Path, tmp_path: Path) -> Path:
    """A private copy of the small project for a test that writes into it."""
    return copy_tree(small_project, tmp_path / "project")


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    interrupts._pending.clear()


@pytest.hookimpl(tryfirst=True)  # before -m deselects by layer
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer (`-m unit`, `-m "not e2e"`); order the layers slowest first."""
    root = Path(__file__).parent

    def layer(item: pytest.Item) -> str:
        parts = item.path.relative_to(root).parts
        return parts[0] if len(parts) > 1 else ""

    for item in items:
        name = layer(item)
        if name:
            item.add_marker(getattr(pytest.mark, name))
    rank = {name: i for i, name in enumerate(LAYER_ORDER)}
    items.sort(key=lambda item: rank.get(layer(item), len(rank)))
