"""End-to-end layer: the real DVC pipeline, crash safety and the cloud emulators.

`reproduced`: one `dvc repro` of the small project copy (tests/e2e/project_copy.py), built once per
run and read-only; test_pipeline_e2e checks it, test_crash_e2e kills stages in a copy of it
(`project_copy.copy_project`). Both modules share an xdist group, so one worker runs the build
and the other keeps running the rest of the suite meanwhile.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.project_copy import dvc, make_project
from tests.support.shared import build_once

REPRO = "repro.json"  # the first `dvc repro`'s return code and output, next to the project


def _reproduce(root: Path) -> None:
    project = make_project(root / "project")
    result = dvc(project, "repro")
    (root / REPRO).write_text(json.dumps({"args": result.args, "returncode": result.returncode,
                                          "stdout": result.stdout, "stderr": result.stderr}), encoding="utf-8")


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """(project root after one `dvc repro`, that repro's completed process). Do not write into the root."""
    root = build_once(tmp_path_factory, "dvc-repro", _reproduce)
    run = json.loads((root / REPRO).read_text(encoding="utf-8"))
    return root / "project", subprocess.CompletedProcess(run["args"], run["returncode"], run["stdout"], run["stderr"])
