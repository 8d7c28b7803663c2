"""Fixtures shared by every layer (unit, data, model, report, e2e).

`small_project`: the session's small project, generate -> clean -> warehouse at 3,000 patients
(tests/support/report_fixtures.py) plus every stage output the report reads, built once per run
(once in all under pytest-xdist) and read-only: a test that writes gets `small_project_copy`.

Every test also gets SIGINT/SIGTERM back as they were: the CLI installs pipelines.interrupts'
handlers and leaves a received signal recorded, which must not reach the next test.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines import interrupts
from tests.support import report_fixtures as rfx
from tests.support.shared import build_once, copy_tree

# A store named by the environment would take every test's runs (pipelines.model.tracking): tests
# use their own project's store; the tests of the variable set it themselves.
os.environ.pop("MLFLOW_TRACKING_URI", None)

# Slowest layers first: under xdist the long groups start at once and the run's tail is short.
LAYER_ORDER = ("e2e", "report", "model", "data", "unit")
# Session fixtures built once per run (tests/support/shared.py) -> the xdist scope of their users,
# and those users (checked at collection).
SHARED_BUILDS = {"reproduced": "dvc-repro", "small_project": "small-project", "dirty_extract_root": "dirty-extract"}
SHARED_GROUPS = {
    "tests/e2e/test_crash_e2e.py": "dvc-repro",
    "tests/e2e/test_pipeline_e2e.py": "dvc-repro",
    "tests/report/test_report_browser.py": "small-project",
    "tests/report/test_report_content.py": "small-project",
    "tests/report/test_report_stages.py": "small-project",
    "tests/data/test_warehouse_readmission.py": "small-project",
    "tests/data/test_bench_pandas_reference.py": "dirty-extract",
    "tests/data/test_truth_roundtrip.py": "dirty-extract",
    "tests/data/test_clean_partitions.py": "dirty-extract",
}


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
    """Mark each test with its layer (`-m unit`, `-m "not e2e"`); order the layers slowest first.

    Also checks SHARED_GROUPS: a module using a shared build must be listed with that build's group.
    """
    root = Path(__file__).parent

    def layer(item: pytest.Item) -> str:
        parts = item.path.relative_to(root).parts
        return parts[0] if len(parts) > 1 else ""

    for item in items:
        name = layer(item)
        if name:
            item.add_marker(getattr(pytest.mark, name))
        module = item.path.relative_to(root.parent).as_posix()
        for fixture, group in SHARED_BUILDS.items():
            if fixture in item.fixturenames and SHARED_GROUPS.get(module) != group:
                raise pytest.UsageError(f"{module} uses `{fixture}`: list it in SHARED_GROUPS as {group!r}")
    rank = {name: i for i, name in enumerate(LAYER_ORDER)}
    items.sort(key=lambda item: rank.get(layer(item), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope`, with the modules of one shared build in one scope (SHARED_GROUPS).

    Each module runs on one worker (its module fixtures are built once); the users of a shared build
    run on the worker that builds it while the other worker runs the rest, instead of waiting on
    the build's lock.
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedBuildScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_GROUPS.get(module, module)

    return SharedBuildScheduling(config, log)
