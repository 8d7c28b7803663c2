"""Fault injection: kill `warehouse` and `train` half-way, then `dvc repro` must end consistent.

In a copy of the shared small project after its `dvc repro` (tests/e2e/conftest.py): then, with params changed
so that warehouse and train are out of date, the stages are started as subprocesses and stopped
half-way with SIGINT and SIGKILL, once directly and once under `dvc repro`. After each stop the
previous outputs must be intact; after a final `dvc repro` every output must open (DuckDB read-only
with queryable marts, models/ loads, no MLflow run left RUNNING) and DVC must report nothing to do.
"""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.project_copy import copy_project, dvc, small_params, tool_env, write_params

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 240


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def folder_md5(folder: Path) -> dict[str, str]:
    return {p.name: md5(p) for p in sorted(folder.iterdir())}


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    """A stage of the project's CLI (or `dvc ...` when args[0] == 'dvc') in its own process group."""
    command = [str(Path(sys.executable).parent / "dvc"), *args[1:]] if args[0] == "dvc" else [
        sys.executable, "-m", "pipelines", "-q", *args]
    return subprocess.Popen(command, cwd=root, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(what: str, ready: Callable[[], object], proc: subprocess.Popen[str]) -> object:
    """Poll until `ready()` is truthy; the process must still be running by then."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}: {out[-2000:]}{err[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str], sig: signal.Signals, pid: int | None = None) -> tuple[int, str]:
    """Send `sig` to the stage (`pid`, default the started process); its return code and stderr."""
    import os

    os.kill(pid or proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a process behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def warehouse_temp(root: Path, ignore: frozenset[str] = frozenset()) -> Path | None:
    """The temporary database a running build writes (not the leftovers named in `ignore`)."""
    for path in sorted((root / "data").glob("warehouse.duckdb.tmp-*")):
        try:
            if path.suffix != ".wal" and path.name not in ignore and path.stat().st_size > 0:
                return path
        except FileNotFoundError:  # swept or renamed meanwhile
            continue
    return None


def running_runs(root: Path) -> list[str]:
    db = root / "mlruns" / "mlflow.db"
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return [r[0] for r in con.execute("select run_uuid from runs where status = 'RUNNING'")]
        finally:
            con.close()
    except sqlite3.OperationalError:  # the writer holds the lock, or the tables are being created
        return []


def leftovers(root: Path) -> list[str]:
    found = [*root.glob("*.tmp-*"), *root.glob("*.old-*")]
    for folder in ("data", "reports", "reports/metrics", "models"):
        if (root / folder).is_dir():
            found += [p for pattern in ("*.tmp-*", "*.old-*", "*.wal") for p in (root / folder).glob(pattern)]
    return sorted(str(p.relative_to(root)) for p in found)


def check_consistent(root: Path) -> None:
    """Every output opens; DVC has nothing to do."""
    import duckdb

    from pipelines.config import Paths
    from pipelines.model.artifacts import load_model

    con = duckdb.connect(str(root / "data" / "warehouse.duckdb"), read_only=True)
    try:
        n_features = con.execute("select count(*) from marts.ml_readmission_features").fetchone()
        n_kpis = con.execute("select count(*) from marts.agg_department_kpis").fetchone()
    finally:
        con.close()
    assert n_features is not None
    assert n_features[0] > 1000
    assert n_kpis is not None
    assert n_kpis[0] > 0
    bundle, meta = load_model(Paths(root))
    assert 0 < bundle.threshold < 1
    assert meta.model_name == "idf-readmission-rf"
    assert running_runs(root) == []
    assert leftovers(root) == []
    status = dvc(root, "status")
    assert "up to date" in status.stdout, status.stdout


@pytest.fixture(scope="module")
def project(reproduced: tuple[Path, subprocess.CompletedProcess[str]],
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared `dvc repro` (tests/e2e/conftest.py): this module stops stages in it."""
    source, first = reproduced
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return copy_project(source, tmp_path_factory.mktemp("crash") / "project")


def test_kills_then_repro_end_consistent(project: Path) -> None:
    root = project
    warehouse = root / "data" / "warehouse.duckdb"
    params = small_params()
    params["warehouse"]["min_cell_patients"] = 11  # warehouse (and all after it) out of date
    params["train"]["n_trials"] = 1  # train out of date whatever the warehouse bytes
    write_params(root, params)

    # warehouse, SIGINT: one line, exit 130, previous database untouched, no temporary file
    before = md5(warehouse)
    proc = start(root, "warehouse")
    wait_for("the temporary warehouse", lambda: warehouse_temp(root), proc)
    code, err = stop(proc, signal.SIGINT)
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted (SIGINT): warehouse stopped, previous outputs kept"
    assert md5(warehouse) == before
    assert leftovers(root) == []

    # warehouse, SIGKILL: the temporary file stays behind, the database is untouched and opens
    proc = start(root, "warehouse")
    wait_for("the temporary warehouse", lambda: warehouse_temp(root), proc)
    code, _ = stop(proc, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert md5(warehouse) == before
    assert any(name.startswith("data/warehouse.duckdb.tmp-") for name in leftovers(root))

    # train, SIGINT: models/ untouched, the run is not left RUNNING
    models = folder_md5(root / "models")
    proc = start(root, "train")
    wait_for("a RUNNING MLflow run", lambda: running_runs(root), proc)
    code, err = stop(proc, signal.SIGINT)
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted (SIGINT): train stopped, previous outputs kept"
    assert folder_md5(root / "models") == models
    assert running_runs(root) == []

    # train, SIGKILL: models/ untouched; its runs stay RUNNING until the next train starts
    proc = start(root, "train")
    wait_for("a RUNNING MLflow run", lambda: running_runs(root), proc)
    code, _ = stop(proc, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert folder_md5(root / "models") == models
    assert running_runs(root)

    # under dvc repro: the warehouse stage killed half-way; dvc fails, nothing is recorded as built
    killed_before = frozenset(p.name for p in (root / "data").glob("warehouse.duckdb.tmp-*"))
    proc = start(root, "dvc", "repro")
    temp = wait_for("the temporary warehouse under dvc", lambda: warehouse_temp(root, killed_before), proc)
    assert isinstance(temp, Path)
    code, _ = stop(proc, signal.SIGKILL, pid=int(temp.name.rsplit("-", 1)[1]))
    assert code != 0
    status = dvc(root, "status")
    assert "warehouse" in status.stdout, status.stdout

    # the next dvc repro sweeps what the kills left and ends consistent
    final = dvc(root, "repro")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    check_consistent(root)
