"""DVC with a gs:// remote through dvc-gs, against gcp-storage-emulator on 127.0.0.1.

Push, wipe the cache and the workspace copy, pull: same bytes, same md5 as DVC recorded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.emulators import Emulator, gcs_emulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DVC = Path(sys.executable).parent / "dvc"
BUCKET = "snds-dvc-test"
COMMAND_TIMEOUT = 120


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs-emulator")) as emulator:
        yield emulator


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    env.pop("STORAGE_EMULATOR_HOST", None)  # DVC must reach the emulator through its remote config
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env,
                            check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _create_bucket(emulator: Emulator, name: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="local-project", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": emulator.url})
    if client.lookup_bucket(name) is None:
        client.create_bucket(name)


def test_dvc_push_wipe_pull_round_trips_through_gs_remote(gcs: Emulator, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    _create_bucket(gcs, BUCKET)

    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    _run(["git", "init", "-q"], repo)
    _run([str(DVC), "init", "-q"], repo)
    payload = os.urandom(300_000) + "é;SNDS;ligne\n".encode() * 500
    tracked = repo / "data" / "stays.csv"
    tracked.write_bytes(payload)
    _run([str(DVC), "add", "-q", "data/stays.csv"], repo)
    recorded = yaml.safe_load((repo / "data" / "stays.csv.dvc").read_text())["outs"][0]["md5"]
    assert recorded == hashlib.md5(payload).hexdigest()

    _run([str(DVC), "remote", "add", "-d", "gcs", f"gs://{BUCKET}/dvcstore"], repo)
    _run([str(DVC), "remote", "modify", "gcs", "endpointurl", gcs.url], repo)
    _run([str(DVC), "remote", "modify", "gcs", "allow_anonymous_login", "true"], repo)
    assert "1 file pushed" in _run([str(DVC), "push"], repo)

    # The object really is in the emulated bucket, content-addressed by its md5.
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="local-project", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs.url})
    names = [blob.name for blob in client.list_blobs(BUCKET, prefix="dvcstore/")]
    assert f"dvcstore/files/md5/{recorded[:2]}/{recorded[2:]}" in names

    shutil.rmtree(repo / ".dvc" / "cache")
    tracked.unlink()
    _run([str(DVC), "pull"], repo)
    assert tracked.read_bytes() == payload
    assert hashlib.md5(tracked.read_bytes()).hexdigest() == recorded
    assert "in sync" in _run([str(DVC), "status", "--cloud"], repo)
