"""The MLflow store of the project: sqlite backend and artifacts, both inside mlruns/.

tracking URI  sqlite:///<root>/mlruns/mlflow.db  (registry on the same database)
artifacts     <root>/mlruns/artifacts/<experiment id>/...
MLflow telemetry is switched off (MLFLOW_DISABLE_TELEMETRY=true, applied again in `connect` in
case mlflow was imported before this module set it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
from mlflow.telemetry import set_telemetry_client
from mlflow.tracking import MlflowClient

from pipelines.config import Paths


def tracking_uri(paths: Paths) -> str:
    return f"sqlite:///{(paths.mlruns / 'mlflow.db').resolve()}"


def artifact_root(paths: Paths) -> Path:
    return (paths.mlruns / "artifacts").resolve()


def connect(paths: Paths) -> MlflowClient:
    """Point this process's MLflow at the project's store (created on first use)."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    set_telemetry_client()  # type: ignore[no-untyped-call]  # re-reads the variable: no telemetry client from here on
    paths.mlruns.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, paths: Paths, name: str) -> str:
    """The experiment's id, created with its artifact location under mlruns/artifacts/."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    location = artifact_root(paths) / name
    location.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(name, artifact_location=location.as_uri()))


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"
