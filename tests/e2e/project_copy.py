"""A throwaway copy of the project at a small scale, driven by the real DVC (end-to-end tests).

Shared by tests/e2e/test_pipeline_e2e.py and tests/e2e/test_crash_e2e.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("pipelines", "dbt", "params.yaml", "dvc.yaml", "pyproject.toml")
IGNORED = shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__", "*.duckdb*")
BIN = Path(sys.executable).parent


def small_params() -> dict[str, Any]:
    params: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    gen = params["generate"]
    assert isinstance(gen, dict)
    gen["patients"] = 2500  # ~2,700 index stays: every stage has enough rows, the pipeline is what is tested
    gen["chunk_patients"] = 1000  # still several chunks
    train = params.get("train")
    if isinstance(train, dict):  # the smallest budgets that still run every step (tests/model pins the values)
        train["n_trials"] = 2
        train["cv_folds"] = 2
        train["learning_curve_points"] = 2
        train["search"] = {**train.get("search", {}), "n_estimators": [10, 20]}
    evaluate = params.get("evaluate")
    if isinstance(evaluate, dict):
        evaluate["permutation_repeats"] = 2
    return params


def write_params(root: Path, params: dict[str, Any]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def tool_env() -> dict[str, str]:
    """The venv's bin/ first on PATH (DVC stages call `python`), no telemetry."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dvc"), *args], cwd=root, env=tool_env(), capture_output=True, text=True, timeout=1800,
        check=False,
    )


def make_project(root: Path, params: dict[str, Any] | None = None) -> Path:
    """Copy the code, dbt project, dvc.yaml and .dvcignore into `root`, write small params, `dvc init --no-scm`."""
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=IGNORED)
        elif src.exists():
            shutil.copy2(src, root / name)
    write_params(root, params if params is not None else small_params())
    assert dvc(root, "init", "--no-scm", "-q").returncode == 0
    shutil.copy2(ROOT / ".dvcignore", root / ".dvcignore")  # over the one `dvc init` wrote
    dvc(root, "config", "core.analytics", "false")
    return root


def copy_project(source: Path, target: Path) -> Path:
    """A copy of a built project (outputs, DVC cache, MLflow store) that owns everything it holds.

    MLflow records absolute artifact locations in mlruns/mlflow.db: they are rewritten from `source`
    to `target`, so a run in the copy never writes into the source. DVC's state and locks
    (.dvc/tmp) are left behind; DVC rebuilds them (it hashes the copied outputs once).
    """
    import sqlite3

    def ignore(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder).name == ".dvc" and "tmp" in names else []

    shutil.copytree(source, target, symlinks=True, ignore=ignore)
    db = target / "mlruns" / "mlflow.db"
    if db.exists():
        old, new = f"{source.resolve()}/", f"{target.resolve()}/"
        con = sqlite3.connect(db)
        try:
            tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
            for table in tables:
                for _, column, kind, *_ in con.execute(f'pragma table_info("{table}")').fetchall():
                    if any(t in str(kind).upper() for t in ("CHAR", "TEXT", "CLOB")):
                        con.execute(f'update "{table}" set "{column}" = replace("{column}", ?, ?) '
                                    f'where instr("{column}", ?) > 0', (old, new, old))
            con.commit()
        finally:
            con.close()
    return target
