"""Local emulators of Google Cloud for the cloud-path tests, and tiny clean tables to load.

- gcp-storage-emulator (Cloud Storage) runs from the project's venv.
- crucible-emulator (BigQuery) pins duckdb 1.5.x while the project pins duckdb 2.x, so it lives
  in its own venv (.venv-emulators), installed on first use by scripts/install-emulators.sh from
  the exact pins of requirements/emulators.lock.

Each emulator is started on a free 127.0.0.1 port in its own process group
(`start_new_session=True`), polled until it answers (bounded), and stopped by its process
group id: never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipelines.contracts import CLEAN_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the project's venv
EMULATORS_VENV = Path(os.environ.get("EMULATORS_VENV", ROOT / ".venv-emulators"))
INSTALL_SCRIPT = ROOT / "scripts" / "install-emulators.sh"
EMULATORS_LOCK = ROOT / "requirements" / "emulators.lock"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
INSTALL_TIMEOUT = 600.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(url: str, expect: bytes) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and expect in response.read()
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Emulator:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the emulator's own process group, SIGKILL it if it does not exit in time."""
        if self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the child leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def _start(name: str, command: Callable[[int], list[str]], ready: Callable[[str], bool], log_dir: Path,
           env: dict[str, str] | None = None, attempts: int = 3) -> Emulator:
    """Start `command(port)` on a free port and wait until `ready(url)`; retry on a lost port race."""
    log_dir.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(attempts):
        port = free_port()
        log = log_dir / f"{name}-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command(port), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=log_dir,
            )
        emulator = Emulator(name, process, port, log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if ready(emulator.url):
                return emulator
            time.sleep(0.2)
        emulator.stop()
        last = emulator.log_tail()
    raise RuntimeError(f"{name} did not answer on {HOST} within {START_TIMEOUT:.0f} s; last log:\n{last}")


@contextlib.contextmanager
def gcs_emulator(workdir: Path) -> Iterator[Emulator]:
    """gcp-storage-emulator storing its objects under workdir/gcs."""
    executable = BIN / "gcp-storage-emulator"
    if not executable.exists():
        raise RuntimeError(f"{executable} missing: gcp-storage-emulator belongs to the project's test pins")
    emulator = _start(
        "gcp-storage-emulator",
        lambda port: [str(executable), "-d", str(workdir / "gcs"), "start", "--host", HOST, "--port", str(port)],
        lambda url: _answers(f"{url}/storage/v1/b", b"storage#buckets"),
        workdir,
    )
    try:
        yield emulator
    finally:
        emulator.stop()


def crucible_executable() -> Path:
    """crucible in its own venv, installed by scripts/install-emulators.sh when missing."""
    override = os.environ.get("CRUCIBLE_BIN")
    if override:
        return Path(override)
    executable = EMULATORS_VENV / "bin" / "crucible"
    stamp = EMULATORS_VENV / ".installed"
    current = stamp.exists() and stamp.read_bytes() == EMULATORS_LOCK.read_bytes()
    if not (executable.exists() and current):
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
            env={**os.environ, "EMULATORS_VENV": str(EMULATORS_VENV)}, check=False,
        )
        if result.returncode != 0 or not executable.exists():
            raise RuntimeError(
                f"scripts/install-emulators.sh failed ({result.returncode}):\n{result.stdout[-2000:]}"
                f"\n{result.stderr[-3000:]}"
            )
    return executable


@contextlib.contextmanager
def crucible_emulator(workdir: Path) -> Iterator[Emulator]:
    """crucible-emulator serving the BigQuery REST API, state in memory."""
    executable = crucible_executable()
    emulator = _start(
        "crucible",
        lambda port: [str(executable), "serve", "--dialect", "bigquery", "--host", HOST, "--port", str(port)],
        lambda url: _answers(f"{url}/_crucible/health", b'"status":"ok"'),
        workdir,
    )
    try:
        yield emulator
    finally:
        emulator.stop()


def crucible_version() -> str:
    """The installed crucible-emulator version, for skip reasons."""
    python = crucible_executable().parent / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('crucible-emulator'))"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return result.stdout.strip() or "unknown"


# --- tiny clean tables ----------------------------------------------------------------------------
def tiny_clean_tables() -> dict[str, pl.DataFrame]:
    """A few consistent rows per clean table, exactly `contracts.CLEAN_SCHEMAS`.

    Covers what a loader can get wrong: nulls, an empty string, a comma and accents inside a
    quoted value, dates, negative and fractional numbers.
    """
    d = date
    rows: dict[str, dict[str, list[object]]] = {
        "patients": {
            "patient_id": ["P001", "P002", "P003", "P004"],
            "birth_rank": [1, 1, 2, 1],
            "sex": [1, 2, 2, 1],
            "birth_year": [1948, 1960, 1935, 1990],
            "department": ["93", "75", "92", "95"],
            "commune": ["93008", "75056", "92012", "95018"],
            "death_date": [None, None, d(2024, 3, 9), None],
        },
        "hospitals": {
            "hospital_id": ["930110051", "750100042"],
            "hospital_name": ["Hôpital Avicenne, Bobigny", "Hôpital Lariboisière"],
            "postal_code": ["93000", "75010"],
            "department": ["93", "75"],
            "category_code": ["101", "101"],
            "category": ["AP-HP/CHU", ""],
            "beds": [520, 870],
        },
        "stays": {
            "stay_id": ["930110051-1", "930110051-2", "750100042-1", "750100042-2", "930110051-3"],
            "hospital_id": ["930110051", "930110051", "750100042", "750100042", "930110051"],
            "pmsi_year": [2023, 2023, 2023, 2024, 2023],
            "rsa_num": [1, 2, 1, 2, 3],
            "patient_id": ["P001", "P001", "P002", "P003", "P004"],
            "admission_date": [d(2023, 1, 5), d(2023, 1, 29), d(2023, 6, 1), d(2024, 2, 20), d(2023, 9, 14)],
            "discharge_date": [d(2023, 1, 12), d(2023, 2, 3), d(2023, 6, 4), d(2024, 3, 9), d(2023, 9, 14)],
            "length_of_stay": [7, 5, 3, 18, 0],
            "icd10_code": ["J441", "J440", "I500", "C349", "S7200"],
            "related_icd10_code": [None, "J440", None, None, None],
            "entry_mode": ["8", "8", "8", "7", "8"],
            "entry_source": ["5", "5", "", "1", "5"],
            "discharge_mode": ["8", "8", "8", "9", "8"],
            "discharge_destination": [None, None, None, None, "7"],
            "ghm_code": ["04M05T", "04M05T", "05M09T", "04M18Z", "08C47T"],
            "age": [74, 75, 63, 88, 33],
            "sex": [1, 1, 2, 2, 1],
            "department": ["93", "93", "75", "92", "95"],
            "stay_cost": [4321.5, 3200.0, 2800.25, 15999.99, 0.1],
            "pmsi_return_codes_ok": [True, True, True, True, False],
        },
        "diagnoses": {
            "stay_id": ["930110051-1", "930110051-1", "750100042-2"],
            "hospital_id": ["930110051", "930110051", "750100042"],
            "pmsi_year": [2023, 2023, 2024],
            "rsa_num": [1, 1, 2],
            "diagnosis_rank": [1, 2, 1],
            "icd10_code": ["E119", "I10", "N183"],
        },
        "dispensings": {
            "dispensing_id": ["D1", "D2", "D3"],
            "patient_id": ["P001", "P001", "P003"],
            "dispensing_date": [d(2022, 12, 20), d(2023, 1, 20), d(2024, 1, 2)],
            "cip13": ["3400930000001", "3400930000002", "3400930000003"],
            "atc_code": ["R03AK06", "C03CA01", None],
            "boxes": [1, 2, 3],
            "amount": [12.5, -3.2, 104.07],
        },
    }
    return {name: pl.DataFrame(rows[name], schema=CLEAN_SCHEMAS[name]) for name in CLEAN_SCHEMAS}
