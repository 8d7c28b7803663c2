"""The project's REST scoring server: MLflow's JSON protocol, the scoring contract in front.

An ASGI app (run by uvicorn, one or more worker processes) serving one registered model version
loaded with `mlflow.pyfunc.load_model("models:/<name>/<version>")`, the version the champion
alias pointed to when `serve` started. It speaks the same protocol as `mlflow models serve`:

    POST /invocations  Content-Type: application/json
        {"dataframe_split": {"columns": [...], "data": [[...], ...]}}  or  {"dataframe_records": [{...}, ...]}
        optionally with "params": {"reasons": k} (k = 0..10) beside it
    -> 200 {"predictions": [{"probability": p, "high_risk": 0|1}, ...]}  (request order)
       p is the calibrated probability; with reasons, each prediction also has
       "reasons": [{"feature": name, "contribution": c}, ...] (at most k, largest first)
    GET /ping, /health -> 200;  GET /version -> the MLflow version

and refuses, before any model code runs, with a JSON body {"error_code", "message"} that names
columns and row numbers but never echoes a value of the request (nor a client-chosen name this
server does not know: it may be a value in the wrong place):
    415 no, two or another Content-Type, or a Content-Encoding;  408 a body not received within
    `serving.request_timeout_s` (a connection that does not complete its headers within it is
    closed: GuardedHttpProtocol);  413 a body over `serving.max_request_bytes` (Content-Length
    checked before reading; a chunked body stops being read at the limit);  400 empty body, not
    JSON, nested too deep, a field named twice, wrong top-level keys or shape, unknown or missing columns, a value
    outside the scoring contract (pipelines/model/scoring_contract.py).

Fast path: the checked columns go straight into the compiled pipeline of
pipelines/model/pyfunc_model.py (same bits as scikit-learn, checked when built); a model of
another shape is scored through the pyfunc's own predict.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipelines import contracts
from pipelines.config import Params
from pipelines.model import scoring_contract as sc
from pipelines.model.pyfunc_model import MAX_REASONS, Calibration, CompiledPipeline, loaded_bundle

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ENV_MODEL_URI = "IDF_SERVE_MODEL_URI"  # set by `serve` for its workers
ENV_PARAMS = "IDF_SERVE_PARAMS_JSON"  # the validated params, as JSON (no temp file to leak)
ENV_MAX_BYTES = "IDF_SERVE_MAX_REQUEST_BYTES"
ENV_MAX_DEPTH = "IDF_SERVE_MAX_JSON_DEPTH"
ENV_REQUEST_TIMEOUT = "IDF_SERVE_REQUEST_TIMEOUT_S"
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 8  # dataframe_split data is depth 4
DEFAULT_REQUEST_TIMEOUT_S = 10.0
TOP_LEVEL_KEYS = ("dataframe_split", "dataframe_records")
SPLIT_KEYS = ("columns", "data", "index")  # pandas' split orientation ("index" is ignored)
# Names an error message may repeat: the protocol's and the feature mart's (schema, not data).
KNOWN_NAMES = {*TOP_LEVEL_KEYS, *SPLIT_KEYS, "inputs", "instances", "params", "dtypes", *contracts.FEATURE_SCHEMA}


class RequestError(Exception):
    """A refused request: HTTP status and a message without request values."""

    def __init__(self, status: int, message: str, error_code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


# ---- body -> columns ------------------------------------------------------------------------------

def _depth_ok(value: Any, limit: int) -> bool:
    """Nesting of the decoded body within `limit` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


class _DuplicateKeyError(ValueError):
    """A JSON object names the same field twice: which value was meant is unknowable."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError
    return obj


def decode_body(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    if not body.strip():
        raise RequestError(400, "empty body: send a JSON object with dataframe_split or dataframe_records")
    try:
        payload = json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKeyError:
        raise RequestError(400, "a JSON object names the same field twice") from None
    except RecursionError:
        raise RequestError(400, f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "the body is not valid JSON (UTF-8)") from None
    if not _depth_ok(payload, max_depth):
        raise RequestError(400, f"JSON nested deeper than {max_depth} levels")
    return payload


def _shown(names: list[str], known: set[str]) -> str:
    """Client-chosen names are repeated only when they are names this server knows (a name may be a
    value pasted in the wrong place: a stay_id, a date); the others are counted, never echoed."""
    safe = [n for n in names if n in known]
    hidden = len(names) - len(safe)
    return ", ".join([*safe[:5], *([f"{hidden} other name(s), not repeated"] if hidden else [])])


def _columns_from_split(split: Any) -> dict[str, list[Any]]:
    if not isinstance(split, dict):
        raise RequestError(400, "dataframe_split must be an object with 'columns' and 'data'")
    unknown = sorted(k for k in split if k not in SPLIT_KEYS)
    if unknown or "columns" not in split or "data" not in split:
        raise RequestError(400, "dataframe_split takes 'columns' and 'data' (and optionally 'index')"
                           + (f"; unknown field(s): {_shown(unknown, KNOWN_NAMES)}" if unknown else ""))
    names, data = split["columns"], split["data"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestError(400, "dataframe_split.columns must be a list of column names")
    if not isinstance(data, list):
        raise RequestError(400, "dataframe_split.data must be a list of rows")
    _check_names(names)
    for row, values in enumerate(data):
        if not isinstance(values, list) or len(values) != len(names):
            raise RequestError(400, f"dataframe_split.data row {row}: expected a list of {len(names)} values")
    return {name: [values[i] for values in data] for i, name in enumerate(names)}


def _columns_from_records(records: Any) -> dict[str, list[Any]]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise RequestError(400, "dataframe_records must be a list of objects (one per row)")
    if not records:
        return {}
    names = list(records[0])
    _check_names(names)
    expected = set(names)
    for row, record in enumerate(records):
        if record.keys() != expected:
            missing = [n for n in names if n not in record]
            problem = f"missing field(s) {', '.join(missing)}" if missing else "field(s) row 0 does not have"
            raise RequestError(400, f"dataframe_records row {row}: {problem}; every row needs the same fields")
    return {name: [record[name] for record in records] for name in names}


def _check_names(names: list[str]) -> None:
    """Column names against the feature contract (names are schema, safe to repeat)."""
    if len(set(names)) != len(names):
        raise RequestError(400, "duplicate column name(s)")
    label = contracts.FEATURE_LABEL
    if label in names:
        raise RequestError(400, f"column '{label}' is the label, not an input: remove it from the request")
    features = list(contracts.NUMERIC_FEATURES) + list(contracts.CATEGORICAL_FEATURES)
    allowed = set(features) | set(sc.PASSTHROUGH)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise RequestError(400, f"unexpected column(s): {_shown(unknown, KNOWN_NAMES)}; the model takes the "
                           "feature columns "
                           f"({', '.join(features)}) and optionally {', '.join(sc.PASSTHROUGH)}")
    missing = [n for n in features if n not in names]
    if missing:
        raise RequestError(400, f"missing feature column(s): {', '.join(missing)}")


def request_reasons(payload: Any) -> int:
    """The optional "params": {"reasons": k} of the body: 0 without it."""
    if not isinstance(payload, dict) or "params" not in payload:
        return 0
    params = payload["params"]
    if not isinstance(params, dict) or set(params) - {"reasons"}:
        raise RequestError(400, 'the "params" field must be an object whose only key is "reasons"')
    value = params.get("reasons", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REASONS:
        raise RequestError(400, f'params "reasons" must be a whole number from 0 to {MAX_REASONS}')
    return int(value)


def request_columns(payload: Any) -> dict[str, list[Any]]:
    """The decoded body -> column name -> values (rows in request order)."""
    data_keys = [k for k in payload if k != "params"] if isinstance(payload, dict) else []
    if not isinstance(payload, dict) or len(data_keys) != 1 or data_keys[0] not in TOP_LEVEL_KEYS:
        shown = _shown(sorted(payload), KNOWN_NAMES) if isinstance(payload, dict) else ""
        raise RequestError(400, "the body must be a JSON object with exactly one of the fields "
                           f"{' or '.join(TOP_LEVEL_KEYS)} (and optionally params)"
                           + (f" (got: {shown})" if shown else ""))
    key, value = data_keys[0], payload[data_keys[0]]
    columns = _columns_from_split(value) if key == "dataframe_split" else _columns_from_records(value)
    if not columns or not next(iter(columns.values())):
        raise RequestError(400, "no rows to score: send at least one feature row")
    return columns


# ---- the model --------------------------------------------------------------------------------------

@dataclass
class Scorer:
    """One loaded model version, its contract and (when it compiles) its fast path."""

    pyfunc: Any
    contract: sc.ScoringContract
    threshold: float | None
    compiled: CompiledPipeline | None
    model_uri: str
    calibration: Calibration = field(default_factory=Calibration)

    @classmethod
    def load(cls, model_uri: str, params: Params) -> Scorer:
        import mlflow

        pyfunc = mlflow.pyfunc.load_model(model_uri)
        bundle = loaded_bundle(pyfunc)  # None: another flavour or format, scored through pyfunc.predict
        compiled = CompiledPipeline.build(bundle) if bundle is not None else None
        trained = sc.trained_categories(bundle) if bundle is not None else {}
        threshold = bundle.threshold if bundle is not None else None
        if compiled is not None and list(compiled.numeric) + list(compiled.categorical) != \
                [r.name for r in sc.scoring_contract(params).numeric] + list(contracts.CATEGORICAL_FEATURES):
            compiled = None  # the model's column order differs from the contract's: use its own predict
        calibration = bundle.calibration if bundle is not None else Calibration()
        return cls(pyfunc, sc.scoring_contract(params, trained), threshold, compiled, model_uri, calibration)

    def score(self, columns: dict[str, list[Any]], reasons: int = 0) -> list[dict[str, Any]]:
        try:
            numeric, categorical = sc.check_columns(self.contract, columns)
        except sc.ScoringContractError as exc:
            raise RequestError(400, f"invalid input: {exc}", "INVALID_PARAMETER_VALUE") from None
        if reasons and self.compiled is None:
            raise RequestError(400, "reasons are not available for this model version (its pipeline does not "
                               "compile to the fast path)", "INVALID_PARAMETER_VALUE")
        if self.compiled is not None and self.threshold is not None:
            matrix = self.compiled.array_matrix(numeric, categorical)
            probability = self.calibration.apply(self.compiled.forest.predict_positive(matrix))
            high_risk = probability >= self.threshold
            predictions: list[dict[str, Any]] = [{"probability": float(p), "high_risk": int(h)}
                                                 for p, h in zip(probability.tolist(), high_risk.tolist(), strict=True)]
            if reasons:
                for prediction, row in zip(predictions, self._reasons(matrix, reasons), strict=True):
                    prediction["reasons"] = row
            return predictions
        from mlflow.exceptions import MlflowException

        frame = pd.DataFrame({name: columns[name] for name in self.contract.features})
        for rule, values in zip(self.contract.numeric, numeric, strict=True):
            frame[rule.name] = values
        try:
            predicted = self.pyfunc.predict(frame)
        except MlflowException as exc:  # the model's own check; older versions' messages may show values
            if exc.get_http_status_code() != 400:  # type: ignore[no-untyped-call]
                raise
            raise RequestError(400, "invalid input: refused by the model's own input check",
                               "INVALID_PARAMETER_VALUE") from None
        return [{"probability": float(p), "high_risk": int(h)} for p, h in
                zip(np.asarray(predicted["probability"], dtype=np.float64).tolist(),
                    np.asarray(predicted["high_risk"]).tolist(), strict=True)]

    def _reasons(self, matrix: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """Per row, up to k features with a positive contribution to the forest score, largest first."""
        assert self.compiled is not None
        contributions = self.compiled.forest.contributions(matrix) @ self.compiled.column_owner
        names = self.compiled.feature_names
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
        return [[{"feature": names[j], "contribution": round(float(row[j]), 6)} for j in top if row[j] > 0]
                for row, top in zip(contributions, order, strict=True)]


# ---- the ASGI app -----------------------------------------------------------------------------------

def _media_type(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, int | None]:
    content_type, length, seen, encoded = None, None, 0, False
    for name, value in headers:
        if name == b"content-type":
            seen += 1  # two Content-Type headers: which one is meant is unknowable, refuse (415)
            content_type = value.decode("latin-1").split(";")[0].strip().lower() if seen == 1 else None
        elif name == b"content-encoding" and value.strip().lower() != b"identity":
            encoded = True  # gzip & co.: refused (415) rather than decoded (a small body can inflate hugely)
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = -1
    return (None if encoded else content_type), length


class ScoringApp:
    """A bare ASGI app: a few routes, no framework overhead on the hot path."""

    def __init__(self, scorer: Scorer, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> None:
        self.scorer = scorer
        self.max_request_bytes = max_request_bytes
        self.max_json_depth = max_json_depth
        self.request_timeout_s = request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ("/ping", "/health"):
            await _respond(send, 200, b"\n", b"text/plain")
        elif path == "/version":
            import mlflow

            await _respond(send, 200, mlflow.__version__.encode(), b"text/plain")
        elif path != "/invocations":
            await _error(send, RequestError(404, "not found: POST /invocations", "ENDPOINT_NOT_FOUND"))
        elif method != "POST":
            await _error(send, RequestError(405, "use POST /invocations"))
        else:
            await self.invocations(scope, receive, send)

    async def invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_read = False
        try:
            content_type, length = _media_type(scope["headers"])
            if content_type != "application/json":
                raise RequestError(415, "unsupported or missing Content-Type (or a Content-Encoding); accepted "
                                   "content types: application/json, uncompressed")
            if length is not None and (length < 0 or length > self.max_request_bytes):
                raise RequestError(413, f"request body over the limit of {self.max_request_bytes} bytes "
                                   "(serving.max_request_bytes)", "REQUEST_LIMIT_EXCEEDED")
            body = await self._read_body(receive)
            body_read = True
            payload = decode_body(body, self.max_json_depth)
            columns = request_columns(payload)
            predictions = self.scorer.score(columns, request_reasons(payload))
        except RequestError as exc:  # refused before the body was read: close, the client may still be sending
            await _error(send, exc, close=not body_read)
            return
        except Exception:  # a bug, not the client's fault: log it, never echo the request
            log.exception("scoring failed")
            await _error(send, RequestError(500, "internal error while scoring", "INTERNAL_ERROR"))
            return
        await _respond(send, 200, json.dumps({"predictions": predictions}).encode(), b"application/json")

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, within the size limit and `request_timeout_s` (a slow or stalled upload
        would otherwise hold the connection and its buffer forever)."""
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise RequestError(408, f"request body not received within {self.request_timeout_s:g} s "
                                   "(serving.request_timeout_s)", "REQUEST_TIMEOUT") from None
            if message["type"] == "http.disconnect":
                raise RequestError(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:  # chunked upload: stop reading at the limit
                raise RequestError(413, f"request body over the limit of {self.max_request_bytes} bytes "
                                   "(serving.max_request_bytes)", "REQUEST_LIMIT_EXCEEDED")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes, close: bool = False) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, exc: RequestError, close: bool = False) -> None:
    body = json.dumps({"error_code": exc.error_code, "message": exc.message}).encode()
    await _respond(send, exc.status, body, b"application/json", close=close)


def create_app() -> ScoringApp:
    """uvicorn factory for each worker: model URI and params from the environment `serve` set."""
    model_uri = os.environ[ENV_MODEL_URI]
    params = Params.model_validate(json.loads(os.environ[ENV_PARAMS]))
    app = ScoringApp(Scorer.load(model_uri, params),
                     int(os.environ.get(ENV_MAX_BYTES, DEFAULT_MAX_REQUEST_BYTES)),
                     int(os.environ.get(ENV_MAX_DEPTH, DEFAULT_MAX_JSON_DEPTH)),
                     request_timeout_s())
    gc.collect()
    gc.freeze()  # the loaded model's objects leave the collector's generations: shorter pauses under load
    log.info("worker %d ready: %s (%s path)", os.getpid(), model_uri,
             "compiled" if app.scorer.compiled is not None else "pyfunc")
    return app


# ---- the connection: a deadline for the request line and headers --------------------------------

def request_timeout_s() -> float:
    return float(os.environ.get(ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_S))


class GuardedHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol, plus a deadline for the request line and headers.

    uvicorn only times out a connection that sends nothing after a response; one that connects and
    sends nothing, or a few header bytes now and then, would stay open forever (slowloris). Here a
    connection whose next request's headers are not complete `request_timeout_s` after it opened,
    or after its last response, is closed. The body has its own deadline (ScoringApp._read_body)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_timeout_s = request_timeout_s()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self._header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expire(self) -> None:
        self._header_deadline = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy and not self.transport.is_closing():  # a request in progress has the body deadline
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
