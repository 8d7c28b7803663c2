"""Build a folder once per test run, shared by every pytest-xdist worker (and by a plain run).

A session fixture runs once per process; under xdist each worker is its own process. `build_once`
puts the folder under the run's common temporary directory (the parent of the workers' basetemp)
and lets the first worker build it under a file lock; the others wait for it and reuse it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def run_dir(factory: pytest.TempPathFactory) -> Path:
    """This run's temporary directory common to all workers (basetemp itself without xdist)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(folder)` once per run; the built folder. A build that raised is retried by the next caller."""
    folder = run_dir(factory) / "shared" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder.with_name(f"{name}.done")
    with FileLock(str(folder.with_name(f"{name}.lock"))):
        if not done.exists():
            if folder.exists():  # a build of this run that failed half-way
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def copy_tree(source: Path, target: Path) -> Path:
    """A private copy of a shared built folder, for a test that writes into it."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    return target
