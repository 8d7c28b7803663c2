"""Serving the champion: the project's REST server, a thin client, batch scoring.

REST   `python -m pipelines serve [--host 127.0.0.1] [--port 5001]` resolves the
       `models:/<train.model_name>@<promote.champion_alias>` alias once in the project's MLflow
       registry and runs uvicorn (`serving.workers` processes) on pipelines.scoring_app, which
       loads that version with mlflow.pyfunc.load_model and speaks MLflow's JSON protocol:
       POST /invocations, Content-Type application/json, {"dataframe_split": {...}} or
       {"dataframe_records": [...]}: feature rows of ml_readmission_features without the label;
       answer {"predictions": [{"probability": p, "high_risk": 0|1}, ...]} in request order.
       Bad input gets 400 / 413 / 415 naming the column and row, never echoing values
       (the scoring contract: pipelines/model/scoring_contract.py).
Batch  `python -m pipelines score --input discharges.parquet --output scores.parquet` scores a
       Parquet file with the champion (the version the alias points to when the command starts),
       after the same contract checks, and writes stay_id, probability, high_risk in the input's
       row order.

`ServedModel` / `served_champion` start the same command on a free loopback port in its own
process group (tests, benchmark) and stop the whole group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import requests
import yaml

from pipelines import atomic, contracts
from pipelines.config import Params, Paths, PromoteParams
from pipelines.errors import PipelineInputError
from pipelines.model import data as fdata
from pipelines.model import scoring_contract as sc
from pipelines.model.scaling import PREDICT_CHUNK_ROWS

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
OUTPUT_COLUMNS = (fdata.KEY, "probability", "high_risk")


class ServingError(PipelineInputError, RuntimeError):
    """No champion to serve, or the server did not come up (the message says why)."""


class ScoringInputError(PipelineInputError, ValueError):
    """The batch input does not match the feature contract (the message names the column)."""


# ---- the command ------------------------------------------------------------------------------

def model_name(params: Params) -> str:
    return params.train.model_name


def champion_uri(params: Params) -> str:
    pp: PromoteParams = params.promote
    return f"models:/{model_name(params)}@{pp.champion_alias}"


def venv_bin() -> Path:
    """The bin/ folder of the running interpreter's environment."""
    return Path(sys.prefix) / "bin"


def serve_env(paths: Paths, base: dict[str, str] | None = None) -> dict[str, str]:
    from pipelines.model import tracking

    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(venv_bin()), env.get("PATH", "")]).rstrip(os.pathsep)
    uri = tracking.tracking_uri(paths)
    env["MLFLOW_TRACKING_URI"] = uri
    env["MLFLOW_REGISTRY_URI"] = uri
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "1"
    return env


def serve_command(paths: Paths, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  params_file: Path | None = None) -> list[str]:
    """`python -m pipelines [--params FILE] serve` for the project at paths.root."""
    cmd = [sys.executable, "-m", "pipelines", "--root", str(paths.root)]
    if params_file is not None:
        cmd += ["--params", str(params_file)]
    return [*cmd, "serve", "--host", host, "--port", str(port)]


def shell_command(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    """The same server as a one-liner for a fresh shell opened in the project root (README)."""
    return f".venv/bin/python -m pipelines serve --host {host} --port {port}"


def champion_version(paths: Paths, params: Params) -> str:
    """The version the champion alias points to; ServingError when there is none."""
    from pipelines.model import tracking

    name, alias = model_name(params), params.promote.champion_alias
    if not tracking.store_exists(paths):
        raise ServingError(f"no MLflow store at {tracking.describe_store(paths)}: `dvc repro` rebuilds it"
                           " (train registers a model, promote names the champion)")
    client = tracking.connect(paths)
    mv = tracking.version_by_alias(client, name, alias)
    if mv is None:
        raise ServingError(f"model '{name}' has no '{alias}' alias: run `python -m pipelines promote` first")
    return str(mv.version)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`serve` options."""
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def write_params(params: Params, directory: Path | None = None) -> Path:
    """The params as a YAML file (the workers load exactly what this process validated)."""
    fd, name = tempfile.mkstemp(prefix="idf-serve-params-", suffix=".yaml", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(params.model_dump(mode="json"), handle, sort_keys=True)
    return Path(name)


def run_serve(paths: Paths, params: Params, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> dict[str, Any]:
    """Serve the champion version with uvicorn until interrupted (SIGINT / SIGTERM)."""
    import uvicorn

    from pipelines import scoring_app

    version = champion_version(paths, params)  # resolve the alias once: every worker loads this version
    sp = params.serving
    model_uri = f"models:/{model_name(params)}/{version}"
    os.chdir(paths.root)
    os.environ.update(serve_env(paths))
    os.environ[scoring_app.ENV_MODEL_URI] = model_uri
    os.environ[scoring_app.ENV_PARAMS] = json.dumps(params.model_dump(mode="json"))
    os.environ[scoring_app.ENV_MAX_BYTES] = str(sp.max_request_bytes)
    os.environ[scoring_app.ENV_MAX_DEPTH] = str(sp.max_json_depth)
    os.environ[scoring_app.ENV_REQUEST_TIMEOUT] = str(sp.request_timeout_s)
    print(f"serving {champion_uri(params)} (version {version}, {sp.workers} worker(s), body limit "
          f"{sp.max_request_bytes} bytes) on http://{host}:{port}/invocations", file=sys.stderr, flush=True)
    # uvicorn re-raises SIGTERM / SIGINT after its graceful shutdown: nothing after this line may matter
    uvicorn.run("pipelines.scoring_app:create_app", factory=True, host=host, port=port, workers=sp.workers,
                loop="uvloop", http=scoring_app.GuardedHttpProtocol, access_log=False, log_level="info")
    return {"model_uri": model_uri, "host": host, "port": port}


# ---- a server process for tests and the benchmark ------------------------------------------------

def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedModel:
    """`serve_command` running in its own process group; stop() ends the whole group."""

    process: subprocess.Popen[bytes]
    url: str
    log_file: Path
    params_file: Path | None = None

    @classmethod
    def start(cls, paths: Paths, params: Params, host: str = DEFAULT_HOST, port: int | None = None,
              timeout_s: float = 120.0, log_file: Path | None = None) -> ServedModel:
        champion_version(paths, params)  # a clear error before spawning anything
        port = port or free_port(host)
        log_file = log_file or Path(tempfile.gettempdir()) / f"idf-serve-{port}.log"
        params_file = write_params(params)
        handle = log_file.open("wb")
        process = subprocess.Popen(
            serve_command(paths, host, port, params_file), cwd=paths.root, env=serve_env(paths),
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
        handle.close()
        server = cls(process, f"http://{host}:{port}", log_file, params_file)
        try:
            server.wait_ready(timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServingError(f"the server exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise ServingError(f"the server did not answer /ping within {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def group_alive(self) -> bool:
        """Any process left in the server's group (uvicorn is reaped by init shortly after mlflow exits)."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the whole group (mlflow and the uvicorn it started), SIGKILL after timeout_s."""
        pgid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout_s)
        deadline = time.monotonic() + timeout_s
        killed = False
        while self.group_alive() and time.monotonic() < deadline:
            if not killed and time.monotonic() > deadline - timeout_s / 2:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)  # a straggler that ignored SIGTERM
                killed = True
            time.sleep(0.1)
        if self.params_file is not None:
            self.params_file.unlink(missing_ok=True)


@contextlib.contextmanager
def served_champion(paths: Paths, params: Params, **kwargs: Any) -> Iterator[ServedModel]:
    server = ServedModel.start(paths, params, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# ---- the client -------------------------------------------------------------------------------

def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def split_payload(frame: pd.DataFrame | pl.DataFrame) -> dict[str, Any]:
    """{"dataframe_split": {"columns": [...], "data": [[...], ...]}} with nulls as JSON null."""
    pdf = frame.to_pandas() if isinstance(frame, pl.DataFrame) else frame
    data = [[_json_value(v) for v in row] for row in pdf.itertuples(index=False, name=None)]
    return {"dataframe_split": {"columns": [str(c) for c in pdf.columns], "data": data}}


def records_payload(frame: pd.DataFrame | pl.DataFrame) -> dict[str, Any]:
    pdf = frame.to_pandas() if isinstance(frame, pl.DataFrame) else frame
    columns = [str(c) for c in pdf.columns]
    return {"dataframe_records": [dict(zip(columns, (_json_value(v) for v in row), strict=True))
                                  for row in pdf.itertuples(index=False, name=None)]}


class ScoringClient:
    """A keep-alive HTTP client of the served model."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def post(self, body: bytes | str | dict[str, Any], content_type: str = "application/json") -> requests.Response:
        data = json.dumps(body, allow_nan=False) if isinstance(body, dict) else body
        return self.session.post(f"{self.url}/invocations", data=data, headers={"Content-Type": content_type},
                                 timeout=self.timeout_s)

    def score(self, frame: pd.DataFrame | pl.DataFrame, reasons: int = 0) -> pd.DataFrame:
        """probability, high_risk per row (request order), and with `reasons` = k a `reasons` column
        (lists of {"feature", "contribution"}); ServingError with the server's message on 4xx/5xx."""
        payload = split_payload(frame)
        if reasons:
            payload["params"] = {"reasons": reasons}
        response = self.post(payload)
        if response.status_code != 200:
            raise ServingError(f"HTTP {response.status_code}: {response.text[:2000]}")
        predictions = pd.DataFrame(response.json()["predictions"])
        return predictions.astype({"probability": "float64", "high_risk": "int64"})

    def close(self) -> None:
        self.session.close()


# ---- batch scoring ------------------------------------------------------------------------------

def _column_name(name: str, limit: int = 64) -> str:
    """A Parquet column name fit for a one-line message: control characters escaped, long names cut."""
    shown = name if name.isprintable() else json.dumps(name)[1:-1]
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def check_batch_input(frame: pl.DataFrame, source: str) -> None:
    """The feature contract: stay_id + every feature; other mart columns (date, label) tolerated."""
    allowed = set(contracts.FEATURE_SCHEMA)
    extra = [c for c in frame.columns if c not in allowed]
    if extra:
        shown = ", ".join(_column_name(c) for c in extra[:10])
        shown += f" (+{len(extra) - 10} more)" if len(extra) > 10 else ""
        raise ScoringInputError(f"{source}: column(s) {shown} are not in the feature contract "
                                "(contracts.FEATURE_SCHEMA); remove them")
    required = [fdata.KEY, *fdata.FEATURES]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ScoringInputError(f"{source}: missing column(s) {', '.join(missing)}")
    if frame.height == 0:
        raise ScoringInputError(f"{source}: no rows to score")
    for name in required:
        dtype, expected = frame.schema[name], contracts.FEATURE_SCHEMA[name]
        if expected.is_integer():
            ok = dtype.is_integer()
        elif expected.is_float():  # not Decimal: the model's own check refuses it (a traceback, exit 1)
            ok = dtype.is_integer() or dtype.is_float()
        else:
            ok = dtype in (pl.String(), pl.Categorical()) or isinstance(dtype, pl.Enum)
        if not ok:
            raise ScoringInputError(f"{source}: column '{name}' has type {dtype}, expected {expected}")
        nulls = frame[name].null_count()
        if nulls and name not in fdata.NULLABLE_NUMERIC:
            raise ScoringInputError(f"{source}: column '{name}' has {nulls} null value(s); only "
                                    f"{', '.join(fdata.NULLABLE_NUMERIC)} may be null")
        if dtype.is_float():
            bad = frame.select((pl.col(name).is_nan() | pl.col(name).is_infinite()).sum()).item()
            if bad:
                raise ScoringInputError(f"{source}: column '{name}' has {bad} NaN or infinite value(s)")
    duplicates = frame.height - frame[fdata.KEY].n_unique()
    if duplicates:
        raise ScoringInputError(f"{source}: column '{fdata.KEY}' is not unique ({duplicates} duplicate row(s))")


def check_batch_contract(frame: pl.DataFrame, model: Any, params: Params, source: str) -> None:
    """Ranges and code sets (the scoring contract, with the model's trained categories)."""
    from pipelines.model.pyfunc_model import loaded_bundle

    bundle = loaded_bundle(model)  # None (another flavour): the contract's own code sets
    trained = sc.trained_categories(bundle) if bundle is not None else None
    try:
        sc.check_frame(sc.scoring_contract(params, trained), frame)
    except sc.ScoringContractError as exc:
        raise ScoringInputError(f"{source}: {exc}") from None


def check_output_path(input_parquet: Path, output_parquet: Path) -> None:
    """--output must be a file path in an existing folder, and never the input itself."""
    if output_parquet.is_dir():
        raise ScoringInputError(f"--output {output_parquet}: is a directory; give a file path such as "
                                f"{output_parquet / 'scores.parquet'}")
    if output_parquet.resolve() == input_parquet.resolve() or (
            output_parquet.exists() and output_parquet.samefile(input_parquet)):
        raise ScoringInputError(f"--output {output_parquet}: is the input file; scoring would overwrite it")
    if not output_parquet.parent.is_dir():
        raise ScoringInputError(f"--output {output_parquet}: folder {output_parquet.parent} does not exist")


def score_batch(paths: Paths, params: Params, input_parquet: Path, output_parquet: Path,
                reasons: int = 0) -> dict[str, Any]:
    """Score a Parquet file with the champion; write stay_id, probability, high_risk (input order) and,
    with `reasons` = k, reason_1..k / reason_i_contribution (the pyfunc's reason columns)."""
    import mlflow

    input_parquet, output_parquet = Path(input_parquet), Path(output_parquet)
    if not input_parquet.exists():
        raise ScoringInputError(f"{input_parquet}: file not found")
    check_output_path(input_parquet, output_parquet)
    try:
        frame = pl.read_parquet(input_parquet)
    except Exception as exc:  # polars raises several kinds for a file that is not Parquet
        raise ScoringInputError(f"{input_parquet}: not a readable Parquet file ({exc})") from exc
    check_batch_input(frame, str(input_parquet))

    version = champion_version(paths, params)  # resolve the alias once: every row gets the same model
    name = model_name(params)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    check_batch_contract(frame, model, params, str(input_parquet))
    features = frame.with_columns(pl.col(fdata.CATEGORICAL).cast(pl.String))
    # In slices of rows: memory bounded by the slice, not the file (same values as one call).
    probability, high_risk, reason_parts = [], [], []
    for part in features.iter_slices(PREDICT_CHUNK_ROWS):
        try:
            scored = model.predict(fdata.to_serving_input(part), params={"reasons": reasons} if reasons else None)
        except mlflow.exceptions.MlflowException as exc:  # the model's own input check: one line, no values
            if exc.get_http_status_code() != 400:  # type: ignore[no-untyped-call]
                raise
            raise ScoringInputError(f"{input_parquet}: refused by the model's own input check") from None
        probability.append(scored["probability"].to_numpy(dtype="float64"))
        high_risk.append(scored["high_risk"].to_numpy().astype("int8"))
        if reasons:
            reason_parts.append(reason_frame(scored, reasons, input_parquet))
    out = pl.DataFrame({
        fdata.KEY: frame[fdata.KEY].cast(pl.String),
        "probability": np.concatenate(probability),
        "high_risk": np.concatenate(high_risk),
    })
    if reasons:
        out = pl.concat([out, pl.concat(reason_parts)], how="horizontal")
    with atomic.atomic_file(output_parquet) as tmp:
        out.write_parquet(tmp, statistics=False)
    summary = {"model_name": name, "model_version": version, "rows": out.height,
               "flagged": int(out["high_risk"].sum()), "input": str(input_parquet), "output": str(output_parquet)}
    log.info("score: %d rows scored by %s v%s, %d flagged -> %s", out.height, name, version, summary["flagged"],
             output_parquet)
    return summary


def reason_frame(scored: pd.DataFrame, k: int, source: Path) -> pl.DataFrame:
    """The pyfunc's reason_i / reason_i_contribution columns (String / Float64); an error if absent."""
    names = [name for i in range(1, k + 1) for name in (f"reason_{i}", f"reason_{i}_contribution")]
    missing = [n for n in names if n not in scored.columns]
    if missing:
        raise ScoringInputError(f"{source}: the champion gives no reasons (a version registered before "
                                "reason codes, or its pipeline does not compile); score without --reasons")
    return pl.DataFrame({n: scored[n].tolist() for n in names},
                        schema={n: pl.Float64 if n.endswith("_contribution") else pl.String for n in names})


def run_score(paths: Paths, params: Params, input_path: Path, output_path: Path, reasons: int = 0) -> dict[str, Any]:
    """The `score` CLI command (--input, --output, --reasons)."""
    return score_batch(paths, params, input_path, output_path, reasons)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipelines.serving [--host H] [--port P]` (same as `python -m pipelines serve`)."""
    from pipelines.config import load_params

    parser = argparse.ArgumentParser(prog="python -m pipelines.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd())
    add_arguments(parser)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    run_serve(Paths(root), load_params(root / "params.yaml"), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
