"""Stages that fail or are interrupted keep their previous outputs (issue 11).

warehouse: dbt builds a temporary DuckDB file; a failing test or an interrupt leaves the previous
warehouse byte for byte, the message names the failing nodes with their first failing rows.
train: stale RUNNING runs of a killed train are marked FAILED; models/ is swapped in whole.
score: a bad --output stops before any work, with one line and exit code 2.
CLI: SIGINT gives one line and exit code 130.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import signal
import socket
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines import atomic, cli
from pipelines.config import Params, Paths
from pipelines.model import tracking
from pipelines.warehouse import WarehouseError, run_warehouse
from tests.data.test_warehouse_readmission import new_project
from tests.support import clean_fixtures as cf
from tests.support.feature_fixtures import write_fixture
from tests.unit.test_atomic import dead_pid


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name or p.suffix == ".wal")


# ---- warehouse ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, dict[str, pl.DataFrame]]:
    """A project whose first build succeeded, after a killed build's leftovers were swept."""
    tables, _, _ = cf.build_clean()
    paths = new_project(tmp_path_factory.mktemp("crash-warehouse"), tables)
    paths.data.mkdir(exist_ok=True)
    pid = dead_pid()
    for name in (f"warehouse.duckdb.tmp-{pid}", f"warehouse.duckdb.tmp-{pid}.wal", "warehouse.duckdb.wal"):
        (paths.data / name).write_bytes(b"left by a killed build")
    run_warehouse(paths, Params())
    return paths, tables


def test_build_sweeps_leftovers_and_leaves_one_file(warehouse: tuple[Paths, dict[str, pl.DataFrame]]) -> None:
    import duckdb

    paths, _ = warehouse
    assert leftovers(paths.data) == []
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from marts.ml_readmission_features").fetchone()[0] > 0  # type: ignore[index]
    finally:
        con.close()


def test_failing_test_keeps_the_previous_warehouse(warehouse: tuple[Paths, dict[str, pl.DataFrame]]) -> None:
    paths, tables = warehouse
    before, metrics_before = md5(paths.warehouse), md5(paths.metrics / "warehouse.json")
    bad = dict(tables)
    bad["stays"] = tables["stays"].with_columns(
        stay_cost=pl.when(pl.int_range(pl.len()) < 2).then(-5.0).otherwise(pl.col("stay_cost")))
    cf.write_clean(paths.clean, bad)
    try:
        with pytest.raises(WarehouseError) as info:
            run_warehouse(paths, Params())
    finally:
        cf.write_clean(paths.clean, tables)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("dbt build failed (1 test, ")
    assert lines[0].endswith("previous warehouse.duckdb kept")
    assert "FAIL test non_negative_stg_stays_stay_cost (2 failing row(s)): stay_cost=-5.0, stay_id=" in lines[1]
    assert len(lines) == 2
    assert md5(paths.warehouse) == before
    assert md5(paths.metrics / "warehouse.json") == metrics_before
    assert leftovers(paths.data) == []


class _Interrupted:
    """What dbtRunner.invoke returns when Ctrl-C reaches dbt."""

    def invoke(self, args: list[str]) -> Any:
        import os

        Path(os.environ["SNDS_DUCKDB_PATH"]).write_bytes(b"half-built")  # dbt had started writing
        from dbt.cli.main import dbtRunnerResult

        return dbtRunnerResult(success=False, exception=KeyboardInterrupt())


def test_interrupt_keeps_the_previous_warehouse(warehouse: tuple[Paths, dict[str, pl.DataFrame]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import dbt.cli.main

    paths, _ = warehouse
    before = md5(paths.warehouse)
    monkeypatch.setattr(dbt.cli.main, "dbtRunner", _Interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_warehouse(paths, Params())
    assert md5(paths.warehouse) == before
    assert leftovers(paths.data) == []


def test_cli_interrupt_is_one_line_and_exit_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.yaml").write_text("seed: 1\n")

    def interrupted(*_: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_stage", interrupted)
    assert cli.main(["--root", str(tmp_path), "warehouse"]) == 130
    assert capsys.readouterr().err == "interrupted (SIGINT): warehouse stopped, previous outputs kept\n"


def test_cli_sigterm_runs_the_same_cleanup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM is raised in the stage like Ctrl-C (so temporary outputs are removed), exit 143."""
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    target = tmp_path / "out.txt"

    def terminated(*_: Any) -> dict[str, Any]:
        with atomic.atomic_file(target) as tmp:
            tmp.write_text("half")
            signal.raise_signal(signal.SIGTERM)
        return {}

    monkeypatch.setattr(cli, "_run_stage", terminated)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["--root", str(tmp_path), "train"]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err == "interrupted (SIGTERM): train stopped, previous outputs kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# ---- train ----------------------------------------------------------------------------------------

def _run(client: Any, experiment_id: str, name: str, tags: dict[str, str]) -> str:
    return str(client.create_run(experiment_id, tags={"mlflow.runName": name, **tags}).info.run_id)


def test_stale_running_runs_are_marked_failed(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    client = tracking.connect(paths)
    exp = tracking.ensure_experiment(client, paths, "stale")
    host = socket.gethostname()
    dead = dead_pid()
    live = tracking.process_tags()  # this test's own process: alive
    killed = _run(client, exp, "killed-study", {"process_id": str(dead), "process_host": host, "process_start": "1"})
    trial = _run(client, exp, "trial-000", {"mlflow.parentRunId": killed})
    legacy = _run(client, exp, "old-study", {"stage": "train"})  # no owner recorded
    running = _run(client, exp, "live-study", live)
    live_trial = _run(client, exp, "trial-000", {"mlflow.parentRunId": running})
    reused = _run(client, exp, "reused-pid", {"process_id": live["process_id"], "process_host": host,
                                              "process_start": "0"})  # same id, another process
    elsewhere = _run(client, exp, "other-host", {"process_id": str(dead), "process_host": host + "-other"})
    done = _run(client, exp, "finished", {})
    client.set_terminated(done, status="FINISHED")

    stale = tracking.mark_stale_runs(client, exp)

    assert sorted(stale) == sorted([killed, trial, legacy, reused])
    status = {r: client.get_run(r).info.status for r in (killed, trial, legacy, running, live_trial, reused,
                                                         elsewhere, done)}
    assert status == {killed: "FAILED", trial: "FAILED", legacy: "FAILED", running: "RUNNING",
                      live_trial: "RUNNING", reused: "FAILED", elsewhere: "RUNNING", done: "FINISHED"}
    assert f"process {dead} gone" in client.get_run(killed).data.tags[tracking.STALE_TAG]
    assert tracking.mark_stale_runs(client, exp) == []


def test_failed_train_keeps_previous_models_and_fails_its_run(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import train

    write_fixture(tmp_path, n_rows=2000, seed=3)
    paths = Paths(tmp_path)
    paths.models.mkdir()
    (paths.models / "model.joblib").write_bytes(b"previous model")
    (paths.models / "model_meta.json").write_text('{"version": "1"}')

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("artifact store full")

    monkeypatch.setattr(importlib.import_module("mlflow.pyfunc"), "log_model", broken)  # the module, not its lazy proxy
    params = Params.model_validate({"train": {"n_trials": 1, "optuna_plots": False, "threshold_fallback": "f2",
                                              "search": {"n_estimators": [10, 12], "max_depth": [3, 5]}}})
    with pytest.raises(RuntimeError, match="artifact store full"):
        train.run_train(paths, params)
    assert (paths.models / "model.joblib").read_bytes() == b"previous model"
    assert json.loads((paths.models / "model_meta.json").read_text()) == {"version": "1"}
    assert leftovers(tmp_path) == []
    client = tracking.connect(paths)
    exp = client.get_experiment_by_name("idf-readmission")
    assert exp is not None
    parents = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'train'")
    assert [r.info.status for r in parents] == ["FAILED"]
    assert parents[0].data.tags["process_id"].isdigit()


# ---- score --output -------------------------------------------------------------------------------

@pytest.mark.parametrize(("output", "message"), [
    ("folder", "is a directory"),
    ("in.parquet", "is the input file"),
    ("./sub/../in.parquet", "is the input file"),
    ("missing/out.parquet", "folder"),
])
def test_score_refuses_a_bad_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str,
                                    message: str) -> None:
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "sub").mkdir()
    source = tmp_path / "in.parquet"
    pl.DataFrame({"stay_id": ["a"]}).write_parquet(source)
    before = md5(source)
    code = cli.main(["--root", str(tmp_path), "score", "--input", str(source), "--output", str(tmp_path / output)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("error: score: --output ")
    assert message in err
    assert md5(source) == before
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
