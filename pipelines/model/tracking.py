"""The MLflow store of the project: sqlite backend and artifacts, both inside mlruns/.

tracking URI  ``MLFLOW_TRACKING_URI`` when set (any MLflow store: a server, another database),
              else sqlite:///<repository root>/mlruns/mlflow.db (registry on the same database)
artifacts     <store folder>/artifacts/<experiment>/... (a server's own default for a remote URI)
The repository root of a DVC experiment run in a temporary copy (``dvc exp run --temp``, the
``--queue`` workers: ``<repo>/.dvc/tmp/exps/...``) is the repository the copy was made from, so
every experiment logs to and registers in the one project store.
`connect` is the one place that sets this process's MLflow environment (never at import): telemetry
off, no artifact progress bars, GitPython quiet when git is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.telemetry import set_telemetry_client
from mlflow.tracking import MlflowClient

from pipelines.config import Paths

ENV_URI = "MLFLOW_TRACKING_URI"
_SQLITE = "sqlite:///"
_DVC_TEMP = (".dvc", "tmp", "exps")  # where DVC makes the temporary copies of --temp / --queue runs


def project_store(paths: Paths) -> Path:
    """The project's mlruns/: the repository's, also from a DVC experiment's temporary copy of it."""
    root = paths.root.resolve()
    parts = root.parts
    for i in range(1, len(parts) - len(_DVC_TEMP) + 1):
        if parts[i : i + len(_DVC_TEMP)] == _DVC_TEMP:
            return Path(*parts[:i]) / "mlruns"
    return root / "mlruns"


_ENV_REGISTRY = "MLFLOW_REGISTRY_URI"


def _user_uri() -> str | None:
    return os.environ.get(ENV_URI) or None


def tracking_uri(paths: Paths) -> str:
    """``MLFLOW_TRACKING_URI`` when the user set it, else the project store's sqlite database."""
    return _user_uri() or f"{_SQLITE}{project_store(paths) / 'mlflow.db'}"


def _local_database(uri: str) -> Path | None:
    return Path(uri.removeprefix(_SQLITE)) if uri.startswith(_SQLITE) else None


def store_exists(paths: Paths) -> bool:
    """True when the store holds something to read (a remote store is assumed there: asked on use)."""
    database = _local_database(tracking_uri(paths))
    return database is None or database.exists()


def describe_store(paths: Paths) -> str:
    """The store as messages name it: its folder, or the URI of a store set by the environment."""
    uri = tracking_uri(paths)
    database = _local_database(uri)
    return uri if _user_uri() or database is None else str(database.parent)


def artifact_root(paths: Paths) -> Path | None:
    """Where new experiments keep their artifacts: beside a local sqlite store, None (the server's) else."""
    database = _local_database(tracking_uri(paths))
    return database.parent / "artifacts" if database is not None else None


def connect(paths: Paths) -> MlflowClient:
    """Point this process's MLflow at the project's store (created on first use)."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    set_telemetry_client()  # type: ignore[no-untyped-call]  # re-reads the variable: no telemetry client from here on
    uri = tracking_uri(paths)
    database = _local_database(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    # mlflow.set_*_uri also export the URI for child processes: put the environment back, or every
    # process started from here (a test's project copy, a benchmark's stage) would take this store
    # for the user's choice.
    before = {name: os.environ.get(name) for name in (ENV_URI, _ENV_REGISTRY)}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, paths: Paths, name: str) -> str:
    """The experiment's id, created with its artifact location under mlruns/artifacts/."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    root = artifact_root(paths)
    if root is None:  # a remote store: its own artifact root
        return str(client.create_experiment(name))
    location = root / name
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


# ---- runs left RUNNING by a killed process -----------------------------------------------------

PROCESS_TAGS = ("process_id", "process_host", "process_start")
STALE_TAG = "stale_run_cleanup"


def process_start(pid: int) -> str:
    """The kernel's start time of a process (clock ticks since boot), "" when unknown: with the pid it
    tells a live process from a later one that reused the id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def process_tags() -> dict[str, str]:
    """Tags of a parent run naming the process that owns it (see `mark_stale_runs`)."""
    pid = os.getpid()
    return {"process_id": str(pid), "process_host": socket.gethostname(), "process_start": process_start(pid)}


def _owner_alive(tags: dict[str, str]) -> bool:
    """True when the run's owner may still be running (on another host we cannot tell: assume yes)."""
    from pipelines.atomic import pid_alive

    pid_text = tags.get("process_id", "")
    if not pid_text.isdigit():
        return False  # no owner recorded: a run of an older train, never finished
    if tags.get("process_host", socket.gethostname()) != socket.gethostname():
        return True
    pid = int(pid_text)
    if not pid_alive(pid):
        return False
    recorded, current = tags.get("process_start", ""), process_start(pid)
    return not recorded or not current or recorded == current


def _running_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def mark_stale_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of the experiment whose process is gone (a killed train), and their
    RUNNING nested runs; returns their ids. Runs of a live process are left alone."""
    running = _running_runs(client, experiment_id)
    by_id = {r.info.run_id: r for r in running}
    stale: list[str] = []
    for run in running:
        tags = run.data.tags
        parent = tags.get("mlflow.parentRunId")
        if parent is not None:
            owner = by_id.get(parent)
            if owner is not None and _owner_alive(owner.data.tags):
                continue  # a trial of a live study; a parent finished or gone will never end this run
        elif _owner_alive(tags):
            continue
        stale.append(run.info.run_id)
    for run_id in stale:
        owner_pid = by_id[run_id].data.tags.get("process_id", "unknown")
        client.set_tag(run_id, STALE_TAG, f"process {owner_pid} gone; marked FAILED at the next train start")
        client.set_terminated(run_id, status="FAILED")
    return stale


# ---- registry helpers (promote and serving) -----------------------------------------------

def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
