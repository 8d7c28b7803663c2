"""Where the MLflow store is: the environment's URI, else the repository's mlruns/, also from a DVC
experiment's temporary copy (`dvc exp run --temp`, queue workers)."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from pipelines.config import Paths
from pipelines.model import tracking


def test_the_store_is_the_projects_mlruns(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "project")
    assert tracking.project_store(paths) == (tmp_path / "project" / "mlruns").resolve()
    assert tracking.tracking_uri(paths) == f"sqlite:///{(tmp_path / 'project' / 'mlruns').resolve()}/mlflow.db"
    assert tracking.artifact_root(paths) == (tmp_path / "project" / "mlruns" / "artifacts").resolve()


@pytest.mark.parametrize("inside", [".dvc/tmp/exps/standalone/tmpab12cd", ".dvc/tmp/exps/run/0d1e2f/repo"])
def test_a_dvc_experiment_copy_uses_the_repositorys_store(tmp_path: Path, inside: str) -> None:
    repo = tmp_path / "repo"
    paths = Paths(repo / inside)
    assert tracking.project_store(paths) == repo.resolve() / "mlruns"
    assert tracking.tracking_uri(paths) == f"sqlite:///{repo.resolve()}/mlruns/mlflow.db"


def test_a_folder_merely_named_dvc_is_not_an_experiment_copy(tmp_path: Path) -> None:
    paths = Paths(tmp_path / ".dvc" / "tmp" / "other")
    assert tracking.project_store(paths) == paths.root.resolve() / "mlruns"


def test_the_environments_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(tmp_path / "project")
    elsewhere = tmp_path / "shared-store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
    assert tracking.tracking_uri(paths) == f"sqlite:///{elsewhere}"
    assert tracking.artifact_root(paths) == elsewhere.parent / "artifacts"
    assert not tracking.store_exists(paths)
    assert tracking.describe_store(paths) == f"sqlite:///{elsewhere}"
    client = tracking.connect(paths)
    experiment_id = tracking.ensure_experiment(client, paths, "exp")
    assert elsewhere.exists()
    assert tracking.store_exists(paths)
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (elsewhere.parent / "artifacts" / "exp").as_uri()
    assert not (tmp_path / "project" / "mlruns").exists()  # nothing written in the project


def test_a_remote_store_is_assumed_present_and_keeps_its_artifact_root(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    paths = Paths(tmp_path)
    assert tracking.store_exists(paths)
    assert tracking.artifact_root(paths) is None
    assert tracking.describe_store(paths) == "http://127.0.0.1:5999"


def test_connect_leaves_the_environment_as_it_found_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow.set_tracking_uri exports the URI: a process started afterwards must not inherit this store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    paths = Paths(tmp_path / "one")
    tracking.connect(paths)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_tracking_uri() == f"sqlite:///{paths.root.resolve() / 'mlruns' / 'mlflow.db'}"
    other = Paths(tmp_path / "two")
    assert tracking.tracking_uri(other) == f"sqlite:///{other.root.resolve() / 'mlruns' / 'mlflow.db'}"
