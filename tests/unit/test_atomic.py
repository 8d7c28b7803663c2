"""The crash-safe writers every stage uses (pipelines/atomic.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import atomic


def dead_pid() -> int:
    """The id of a process that has finished (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(proc.stdout)
    assert not atomic.pid_alive(pid)
    return pid


def write_then_fail(target: Path, exc: BaseException, folder: bool = False) -> None:
    """Write something under the temporary name, then fail before the rename."""
    if folder:
        with atomic.atomic_folder(target) as staging:
            (staging / "model.joblib").write_text("new")
            raise exc
    with atomic.atomic_file(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise exc


def test_file_replaced_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.json"
    atomic.write_text(target, '{\n  "a": 1\n}\n')
    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail(target, RuntimeError("boom"))
    assert target.read_text().startswith('{\n  "a"')
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_interrupt_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        write_then_fail(target, KeyboardInterrupt())
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_nothing_written_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic.atomic_file(tmp_path / "x"):
        pass
    assert not (tmp_path / "x").exists()


def test_folder_swapped_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "models"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with pytest.raises(ValueError, match="refit failed"):
        write_then_fail(target, ValueError("refit failed"), folder=True)
    assert sorted(p.name for p in target.iterdir()) == ["old.bin"]
    with atomic.atomic_folder(target) as staging:
        (staging / "model.joblib").write_text("new")
        (staging / "model_meta.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["model.joblib", "model_meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_sweep_removes_leftovers_of_dead_processes_only(tmp_path: Path) -> None:
    target = tmp_path / "warehouse.duckdb"
    target.write_text("keep")
    dead, live = dead_pid(), os.getppid()
    leftovers = [f"warehouse.duckdb.tmp-{dead}", f"warehouse.duckdb.tmp-{dead}.wal", f"warehouse.duckdb.old-{dead}"]
    for name in leftovers:
        (tmp_path / name).write_text("x")
    (tmp_path / f"warehouse.duckdb.tmp-{dead}.d").mkdir()  # not ours: another name
    (tmp_path / f"warehouse.duckdb.tmp-{live}").write_text("a live writer's")
    (tmp_path / f"other.duckdb.tmp-{dead}").write_text("another target's")
    removed = atomic.sweep_stale(target)
    assert sorted(p.name for p in removed) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "warehouse.duckdb", f"warehouse.duckdb.tmp-{dead}.d", f"warehouse.duckdb.tmp-{live}",
        f"other.duckdb.tmp-{dead}"])
    clean = tmp_path / "patients.parquet"  # clean's own naming: .<name>.tmp<pid>
    (tmp_path / f".patients.parquet.tmp{dead}").write_text("half")
    (tmp_path / f".patients.parquet.tmp{live}").write_text("a live writer's")
    assert [p.name for p in atomic.sweep_stale(clean)] == [f".patients.parquet.tmp{dead}"]
    folder = tmp_path / "models"
    (tmp_path / f"models.tmp-{dead}").mkdir()
    (tmp_path / f"models.tmp-{dead}" / "model.joblib").write_text("half")
    with atomic.atomic_folder(folder) as staging:  # a new writer sweeps the killed one's folder
        (staging / "model.joblib").write_text("whole")
    assert not (tmp_path / f"models.tmp-{dead}").exists()
    assert (folder / "model.joblib").read_text() == "whole"
