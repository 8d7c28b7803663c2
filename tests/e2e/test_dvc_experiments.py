"""`dvc exp run --temp` runs a stage in a temporary copy under .dvc/tmp/exps: its MLflow runs must
land in the repository's store, not in a store inside the copy that DVC throws away.

A one-stage DVC project in a git repository stands for the pipeline (the whole one would take
minutes): its stage logs a run through `pipelines.model.tracking`, as train does.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.e2e.project_copy import dvc, tool_env

STAGE = """\
import sys
from pathlib import Path
import mlflow
from pipelines.config import Paths
from pipelines.model import tracking
paths = Paths(Path.cwd())
client = tracking.connect(paths)
experiment = tracking.ensure_experiment(client, paths, "exp")
with mlflow.start_run(experiment_id=experiment, run_name=sys.argv[1]):
    mlflow.log_metric("x", 1.0)
Path("out.txt").write_text(sys.argv[1] + "\\n", encoding="utf-8")
"""


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=tool_env(), timeout=120)


def _run_names(store: Path) -> list[str]:
    with sqlite3.connect(store / "mlflow.db") as db:
        return sorted(row[0] for row in db.execute("select name from runs"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "test@example.org")
    _git(root, "config", "user.name", "test")
    assert dvc(root, "init", "-q").returncode == 0
    (root / "stage.py").write_text(STAGE, encoding="utf-8")
    (root / "params.yaml").write_text("name: first\n", encoding="utf-8")
    (root / "dvc.yaml").write_text(
        "stages:\n  log:\n    cmd: python stage.py ${name}\n    deps: [stage.py]\n    params: [name]\n"
        "    outs: [out.txt]\n", encoding="utf-8")
    (root / ".gitignore").write_text("mlruns/\n", encoding="utf-8")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "one stage")
    return root


def test_exp_run_temp_logs_into_the_repositorys_store(repo: Path) -> None:
    done = dvc(repo, "exp", "run", "--temp", "-S", "name=from-temp")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _run_names(repo / "mlruns") == ["from-temp"]
    artifacts = repo / "mlruns" / "artifacts" / "exp"
    assert artifacts.is_dir()
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))  # no store left in a temporary copy
    done = dvc(repo, "exp", "run", "-S", "name=in-workspace")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _run_names(repo / "mlruns") == ["from-temp", "in-workspace"]
