"""Serving the champion: input checks of the pyfunc, a real `mlflow models serve` process on a free
loopback port (good and bad payloads: contract ranges, body size, content type, malformed JSON,
no echo of request values; the README one-liner from a fresh shell), batch scoring and its exit 2.

The model is trained by the real `train` stage on a tiny synthetic mart into tmp_path, and the
alias `champion` is set on it (promotion itself is tested in test_promote.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
import requests
import yaml

from pipelines import contracts
from pipelines.config import Params, Paths
from pipelines.model import data as fdata
from pipelines.model import pyfunc_model, tracking
from pipelines.model.artifacts import load_model
from pipelines.model.pyfunc_model import CompiledPipeline, InputError, check_input, predict_frame, reason_columns
from pipelines.serving import (
    ScoringClient,
    ScoringInputError,
    ServedModel,
    ServingError,
    champion_uri,
    free_port,
    records_payload,
    score_batch,
    serve_command,
    serve_env,
    shell_command,
    split_payload,
    venv_bin,
)
from pipelines.train import run_train
from tests.support.feature_fixtures import write_fixture

NAME = "idf-readmission-rf"
TRAIN: dict[str, Any] = {
    "model_name": NAME,
    "n_trials": 2,
    "optuna_plots": False,
    "search": {"n_estimators": [20, 40], "max_depth": [4, 10], "min_samples_leaf": [10, 60]},
}
# One worker and a small body limit keep the module's server light and the 413 cases cheap.
# A short request deadline keeps the stalled-client cases quick.
SERVING: dict[str, Any] = {"workers": 1, "max_request_bytes": 256 * 1024, "request_timeout_s": 2.0}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("serving")
    write_fixture(root, n_rows=3000, seed=11)
    paths = Paths(root)
    params = Params.model_validate({"train": TRAIN, "serving": SERVING})
    result = run_train(paths, params)
    client = tracking.connect(paths)
    client.set_registered_model_alias(NAME, "champion", result["model_version"])
    bundle, meta = load_model(paths)
    split = fdata.temporal_split(fdata.load_features(paths), meta.train_end, meta.valid_end,
                                 gap_days=params.warehouse.readmission_window_days)
    info = mlflow.models.get_model_info(f"models:/{NAME}@champion")
    return {"paths": paths, "params": params, "bundle": bundle, "meta": meta, "split": split,
            # MLflow drops undeclared columns and casts types before the model sees them when the
            # logged signature declares inputs; the model's own checks then cannot refuse them.
            "raw_input_visible": info.signature is None or info.signature.inputs is None}


def _features(project: dict[str, Any], n: int) -> pl.DataFrame:
    return project["split"].test.head(n).select(fdata.FEATURES)


def _expected(project: dict[str, Any], frame: pl.DataFrame) -> pd.DataFrame:
    return predict_frame(project["bundle"], fdata.to_model_input(frame))


# ---- the command and its environment --------------------------------------------------------------

def test_serve_command_and_environment(project: dict[str, Any]) -> None:
    paths, params = project["paths"], project["params"]
    cmd = serve_command(paths, "127.0.0.1", 5001, Path("/tmp/p.yaml"))
    assert cmd == [sys.executable, "-m", "pipelines", "--root", str(paths.root), "--params", "/tmp/p.yaml",
                   "serve", "--host", "127.0.0.1", "--port", "5001"]
    env = serve_env(paths, base={"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep)[0] == str(venv_bin())
    assert env["MLFLOW_TRACKING_URI"] == env["MLFLOW_REGISTRY_URI"] == tracking.tracking_uri(paths)
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert champion_uri(Params.model_validate({"promote": {"champion_alias": "prod"}})).endswith("@prod")
    assert shell_command(port=5002) == ".venv/bin/python -m pipelines serve --host 127.0.0.1 --port 5002"
    assert params.serving.max_request_bytes == 256 * 1024
    assert Params.model_validate({}).serving.max_request_bytes == 4 * 1024 * 1024


def test_no_champion_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="no MLflow store"):
        ServedModel.start(Paths(tmp_path), Params.model_validate({}))


# ---- the pyfunc's own checks (no server) -----------------------------------------------------------

def test_pyfunc_constants_match_the_contract() -> None:
    assert pyfunc_model.LABEL == contracts.FEATURE_LABEL
    assert set(pyfunc_model.PASSTHROUGH) == {contracts.FEATURE_KEY, contracts.FEATURE_SPLIT_DATE}
    floats = {n for n, t in contracts.NUMERIC_FEATURES.items() if t.is_float()}
    assert set(pyfunc_model.FLOAT_FEATURES) == floats
    assert set(pyfunc_model.NULLABLE_FEATURES) == set(fdata.NULLABLE_NUMERIC)


def _one_row(project: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = records_payload(_features(project, 1))["dataframe_records"][0]
    return row


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"age": ...}, "missing feature column(s): age"),
        ({"age": "old"}, "column 'age': expected an integer, got str (row 0)"),
        ({"age": 65.5}, "column 'age': expected an integer, got a fraction (row 0)"),
        ({"age": True}, "column 'age': expected an integer, got a boolean"),
        ({"age": math.nan}, "column 'age': null/NaN at row 0"),
        ({"stay_cost": None}, "column 'stay_cost': null/NaN"),
        ({"stay_cost": math.inf}, "column 'stay_cost': infinite value"),
        ({"department": 93}, "column 'department': expected a string, got int (row 0)"),
        ({"department": None}, "column 'department': null at row 0"),
        ({"foo": 1}, "unexpected column(s): foo"),
        ({"readmitted_30d": 1}, "'readmitted_30d' is the label"),
    ],
    ids=["missing", "str-for-int", "fraction-for-int", "bool", "nan", "null", "inf", "int-for-str",
         "null-str", "extra", "label"],
)
def test_check_input_refuses(project: dict[str, Any], change: dict[str, Any], message: str) -> None:
    row = _one_row(project)
    for key, value in change.items():
        if value is ...:
            row.pop(key)
        else:
            row[key] = value
    with pytest.raises(InputError) as caught:
        check_input(project["bundle"], pd.DataFrame([row]))
    assert message in str(caught.value)
    assert "old" not in str(caught.value)
    assert "65.5" not in str(caught.value)


def test_check_input_accepts(project: dict[str, Any]) -> None:
    bundle = project["bundle"]
    row = _one_row(project)
    check_input(bundle, pd.DataFrame([row, dict(row, days_since_last_discharge=None)]))
    check_input(bundle, pd.DataFrame([dict(row, stay_id="X-1", discharge_date="2024-05-01")]))
    check_input(bundle, fdata.to_serving_input(project["split"].test))  # polars ints, nulls as NaN
    check_input(bundle, fdata.to_model_input(project["split"].test))  # all-float numerics
    with pytest.raises(InputError, match="no rows"):
        check_input(bundle, pd.DataFrame(columns=fdata.FEATURES))


def test_compiled_pipeline_gives_sklearn_bits(project: dict[str, Any]) -> None:
    bundle = project["bundle"]
    compiled = CompiledPipeline.build(bundle)
    assert compiled is not None
    for part in (project["split"].train, project["split"].test):
        for x in (fdata.to_model_input(part), fdata.to_serving_input(part)):
            fast, slow = predict_frame(bundle, x, compiled), predict_frame(bundle, x)
            np.testing.assert_array_equal(fast["probability"].to_numpy(), slow["probability"].to_numpy())
            np.testing.assert_array_equal(fast["high_risk"].to_numpy(), slow["high_risk"].to_numpy())
    # JSON-shaped rows: object columns with None, an unseen category
    records = pd.DataFrame(records_payload(_features(project, 20))["dataframe_records"])
    records.loc[3, "days_since_last_discharge"] = None
    records.loc[5, "department"] = "99"
    np.testing.assert_array_equal(predict_frame(bundle, records, compiled)["probability"].to_numpy(),
                                  predict_frame(bundle, records)["probability"].to_numpy())
    assert CompiledPipeline.build(dataclasses.replace(bundle, pipeline=object())) is None  # another shape: sklearn path


def test_logged_signature_lets_the_model_check_its_input(project: dict[str, Any]) -> None:
    """train.model_signature() must declare outputs only: with declared inputs MLflow drops extra
    columns and casts 65.5 / true to integers before the model's checks run (HTTP 200)."""
    assert project["raw_input_visible"], (
        "the registered model declares an input schema: extra columns, the label, fractional or boolean "
        "integers are silently accepted by the server; log ModelSignature(inputs=None, outputs=...) in train.py")


def test_registered_model_refuses_bad_input_in_process(project: dict[str, Any]) -> None:
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    row = _one_row(project)
    with pytest.raises(mlflow.exceptions.MlflowException, match="stay_cost") as caught:
        loaded.predict(pd.DataFrame([dict(row, stay_cost=None)]))
    assert caught.value.get_http_status_code() == 400


def test_scorer_fast_path_equals_the_pyfunc_path(project: dict[str, Any]) -> None:
    """The server's compiled path and its fallback (the pyfunc's own predict) give the same bits."""
    from pipelines.scoring_app import Scorer, request_columns

    scorer = Scorer.load(f"models:/{NAME}@champion", project["params"])
    assert scorer.compiled is not None
    assert scorer.contract.rule("diagnosis_group").allowed().count("'") == 2 * 8  # fixture's 8 groups
    rows = project["split"].test.head(50).drop(fdata.LABEL).with_columns(pl.col(fdata.DATE).cast(pl.String))
    columns = request_columns(records_payload(rows))
    fast = scorer.score(columns)
    slow = Scorer(scorer.pyfunc, scorer.contract, scorer.threshold, None, scorer.model_uri).score(columns)
    assert fast == slow
    expected = _expected(project, rows.with_columns(pl.col(fdata.DATE).str.to_date()))
    assert [p["probability"] for p in fast] == expected["probability"].tolist()
    assert [p["high_risk"] for p in fast] == expected["high_risk"].tolist()


def test_scorer_reasons_match_the_batch_reasons(project: dict[str, Any]) -> None:
    from pipelines.scoring_app import Scorer, request_columns

    scorer = Scorer.load(f"models:/{NAME}@champion", project["params"])
    rows = project["split"].test.head(20).drop(fdata.LABEL).with_columns(pl.col(fdata.DATE).cast(pl.String))
    columns = request_columns(records_payload(rows))
    plain, explained = scorer.score(columns), scorer.score(columns, reasons=3)
    assert [p["probability"] for p in explained] == [p["probability"] for p in plain]
    compiled = CompiledPipeline.build(project["bundle"])
    assert compiled is not None
    frame = fdata.to_model_input(rows.with_columns(pl.col(fdata.DATE).str.to_date()))
    expected = reason_columns(compiled, frame, 3)
    for i, prediction in enumerate(explained):
        assert len(prediction["reasons"]) <= 3
        for j, reason in enumerate(prediction["reasons"], start=1):
            assert reason["feature"] == expected[f"reason_{j}"].iloc[i]
            assert reason["contribution"] == pytest.approx(expected[f"reason_{j}_contribution"].iloc[i], abs=1e-6)


# ---- a real server ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(project: dict[str, Any]) -> Iterator[ServedModel]:
    served = ServedModel.start(project["paths"], project["params"])
    try:
        yield served
    finally:
        served.stop()
        assert not served.group_alive()  # the whole group is gone (serve, its uvicorn workers)
        assert served.params_file is not None
        assert not served.params_file.exists()  # nothing left in the temp folder


@pytest.mark.slow
def test_server_scores_like_in_process(project: dict[str, Any], server: ServedModel) -> None:
    client = ScoringClient(server.url)
    assert server.url.startswith("http://127.0.0.1:")
    for n in (1, 100):
        frame = _features(project, n)
        got = client.score(frame)
        expected = _expected(project, frame)
        assert list(got.columns) == ["probability", "high_risk"]
        assert len(got) == n
        np.testing.assert_allclose(got["probability"], expected["probability"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got["high_risk"], expected["high_risk"])
    # records, with the mart's id and date along, and a first stay (null days since last discharge)
    mart_rows = project["split"].test.head(5).drop(fdata.LABEL).with_columns(
        pl.col(fdata.DATE).cast(pl.String), days_since_last_discharge=pl.lit(None, pl.Int32))
    response = client.post(records_payload(mart_rows))
    assert response.status_code == 200, response.text
    predictions = pd.DataFrame(response.json()["predictions"])
    expected = _expected(project, mart_rows.with_columns(pl.col(fdata.DATE).str.to_date()))
    np.testing.assert_allclose(predictions["probability"], expected["probability"], rtol=0, atol=1e-12)
    explained = client.score(_features(project, 10), reasons=2)  # asked for: top features per score
    assert list(explained.columns) == ["probability", "high_risk", "reasons"]
    np.testing.assert_allclose(explained["probability"], _expected(project, _features(project, 10))["probability"],
                               rtol=0, atol=1e-12)
    assert all(len(r) <= 2 and {x["feature"] for x in r} <= set(fdata.FEATURES) for r in explained["reasons"])
    assert any(r for r in explained["reasons"])


SECRET_ID = "940110042-SECRET77"  # a stay_id and a date that no error body may contain
SECRET_DATE = "2024-05-17"
JSON = "application/json"


def _bad_payloads(row: dict[str, Any]) -> list[tuple[str, bytes | str, str | None, int, list[str]]]:
    """(id, body, content type, status, texts the error must contain). Every body carries the
    secret stay_id and date; records bodies put the bad value in row 1 (row 0 is good)."""
    base = dict(row, stay_id=SECRET_ID, discharge_date=SECRET_DATE)

    def records(**change: Any) -> str:
        changed = {k: v for k, v in base.items() if change.get(k, 0) is not ...}
        changed.update({k: v for k, v in change.items() if v is not ...})
        return json.dumps({"dataframe_records": [dict(base, stay_id="A-1"), changed]})  # NaN literals allowed

    good = json.dumps({"dataframe_records": [base]})
    split = split_payload(pd.DataFrame([base]))["dataframe_split"]
    age = "column 'age', row 1"
    nested = '{"dataframe_records": ' + "[" * 100_000 + "]" * 100_000 + "}"
    return [
        # the scoring contract: column, row and allowed range / values
        ("age-negative", records(age=-5), JSON, 400, [age, "[18, 115]"]),
        ("age-200", records(age=200), JSON, 400, [age, "[18, 115]"]),
        ("age-1e300", records(age=1e300), JSON, 400, [age, "[18, 115]"]),
        ("age-huge-int", records(age=10**400), JSON, 400, [age]),
        ("sex-7", records(sex=7), JSON, 400, ["column 'sex', row 1", "one of 1, 2"]),
        ("cost-negative", records(stay_cost=-1e9), JSON, 400, ["column 'stay_cost', row 1", ">= 0"]),
        ("cost-nan", records(stay_cost=math.nan), JSON, 400, ["column 'stay_cost', row 1"]),
        ("cost-infinite", records(stay_cost=math.inf), JSON, 400, ["column 'stay_cost', row 1"]),
        ("cost-null", records(stay_cost=None), JSON, 400, ["column 'stay_cost', row 1"]),
        ("lace-99", records(lace_score=99), JSON, 400, ["column 'lace_score', row 1", "[0, 19]"]),
        ("flag-2", records(emergency_admission=2), JSON, 400, ["column 'emergency_admission', row 1"]),
        ("department-99", records(department="99"), JSON, 400, ["column 'department', row 1", "'75'", "'95'"]),
        ("department-emoji", records(department="\U0001F600"), JSON, 400, ["column 'department', row 1"]),
        ("department-null", records(department=None), JSON, 400, ["column 'department', row 1"]),
        ("department-int", records(department=93), JSON, 400, ["column 'department', row 1"]),
        ("unknown-diagnosis", records(diagnosis_group="WEREWOLF"), JSON, 400,
         ["column 'diagnosis_group', row 1", "'COPD'"]),
        ("unknown-destination", records(discharge_destination="moon"), JSON, 400,
         ["column 'discharge_destination', row 1", "'home'"]),
        ("long-string", records(hospital_category="x" * 5000), JSON, 400,
         ["column 'hospital_category', row 1", "longer than 64"]),
        ("long-stay-id", records(stay_id="S" * 200), JSON, 400, ["column 'stay_id', row 1"]),
        ("bad-date", records(discharge_date="17/05/2024"), JSON, 400, ["column 'discharge_date', row 1"]),
        ("fraction-for-int", records(age=71.5), JSON, 400, [age, "whole number"]),
        ("bool-for-int", records(emergency_admission=True), JSON, 400, ["column 'emergency_admission', row 1"]),
        ("str-for-int", records(age="71"), JSON, 400, [age]),
        ("missing-column", records(age=...), JSON, 400, ["dataframe_records row 1: missing field(s) age"]),
        ("missing-column-everywhere", json.dumps({"dataframe_split": {
            "columns": [c for c in split["columns"] if c != "age"],
            "data": [[v for c, v in zip(split["columns"], split["data"][0], strict=True) if c != "age"]]}}),
         JSON, 400, ["missing feature column(s): age"]),
        ("extra-column", json.dumps({"dataframe_records": [dict(base, ward="B2")]}), JSON, 400,
         ["unexpected column(s): 1 other name(s), not repeated"]),
        ("known-name-extra", json.dumps({"dataframe_records": [dict(base, readmitted_30d=0, ward="B2")]}), JSON,
         400, ["readmitted_30d"]),
        # a client-chosen name may be a value in the wrong place: never repeated
        ("secret-as-column", json.dumps({"dataframe_records": [dict(base, **{SECRET_ID: 1})]}), JSON, 400,
         ["unexpected column(s): 1 other name(s), not repeated"]),
        ("secret-as-top-key", json.dumps({SECRET_ID: [base]}), JSON, 400, ["exactly one of"]),
        ("secret-as-split-field", json.dumps({"dataframe_split": dict(split, **{SECRET_DATE: 1})}), JSON, 400,
         ["unknown field(s): 1 other name(s)"]),
        ("secret-in-split-columns", json.dumps({"dataframe_split": {
            "columns": [*split["columns"], SECRET_ID], "data": [[*split["data"][0], 1]]}}), JSON, 400,
         ["unexpected column(s)"]),
        # the same field twice: which value was meant is unknowable
        ("duplicate-key", json.dumps({"dataframe_records": [base]})[:-3] + ', "age": 200}]}', JSON, 400,
         ["names the same field twice"]),
        ("duplicate-top-key", '{"dataframe_records": [], ' + json.dumps({"dataframe_records": [base]})[1:], JSON,
         400, ["names the same field twice"]),
        ("label-column", json.dumps({"dataframe_records": [dict(base, readmitted_30d=1)]}), JSON, 400,
         ["readmitted_30d"]),
        # malformed bodies
        ("empty-body", "", JSON, 400, ["empty body"]),
        ("non-json", "age=71&sex=1", JSON, 400, ["not valid JSON"]),
        ("not-utf8", b"\xff\xfe{", JSON, 400, ["not valid JSON"]),
        ("deeply-nested", nested, JSON, 400, ["nested deeper"]),
        ("nested-values", json.dumps({"dataframe_records": [dict(base, age=[[[[[[71]]]]]])]}), JSON, 400,
         ["nested deeper"]),
        ("not-an-object", json.dumps([base]), JSON, 400, ["dataframe_records"]),
        ("unknown-top-level-key", json.dumps({"rows": [base]}), JSON, 400, ["dataframe_split"]),
        ("extra-top-level-key", json.dumps({"dataframe_records": [base], "meta": {}}), JSON, 400,
         ["exactly one of"]),
        ("params-unknown-key", json.dumps({"dataframe_records": [base], "params": {"top": 3}}), JSON, 400,
         ['only key is "reasons"']),
        ("reasons-out-of-range", json.dumps({"dataframe_records": [base], "params": {"reasons": 11}}), JSON,
         400, ["from 0 to 10"]),
        ("reasons-not-a-number", json.dumps({"dataframe_records": [base], "params": {"reasons": "3"}}), JSON,
         400, ["whole number"]),
        ("both-top-level-keys", json.dumps({"dataframe_records": [base], "dataframe_split": split}), JSON, 400,
         ["exactly one of"]),
        ("split-unknown-field", json.dumps({"dataframe_split": dict(split, dtypes={})}), JSON, 400,
         ["unknown field(s): dtypes"]),
        ("split-bad-shape", json.dumps({"dataframe_split": {"columns": split["columns"], "data": [[1, 2]]}}),
         JSON, 400, ["dataframe_split.data row 0"]),
        ("records-not-objects", json.dumps({"dataframe_records": [[1, 2]]}), JSON, 400, ["list of objects"]),
        ("no-rows", json.dumps({"dataframe_records": []}), JSON, 400, ["no rows"]),
        # content type
        ("no-content-type", good, None, 415, ["application/json"]),
        ("text-plain", "age,sex\n71,1\n", "text/plain", 415, ["content types"]),
        ("form", good, "application/x-www-form-urlencoded", 415, ["application/json"]),
        ("json-suffix-type", good, "application/vnd.api+json", 415, ["application/json"]),
        # size: a body over serving.max_request_bytes (256 KiB in this module)
        ("over-limit", records(hospital_category="x" * 300_000), JSON, 413, ["max_request_bytes"]),
    ]


BAD_IDS = [case[0] for case in _bad_payloads({})]


def _post(url: str, body: bytes | str, content_type: str | None) -> requests.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    data = body.encode() if isinstance(body, str) else body
    return requests.post(f"{url}/invocations", data=data, headers=headers, timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", BAD_IDS)
def test_bad_payload_gets_4xx_without_echo_and_the_server_keeps_serving(
        project: dict[str, Any], server: ServedModel, case_id: str) -> None:
    cases = {case[0]: case[1:] for case in _bad_payloads(_one_row(project))}
    body, content_type, status, needles = cases[case_id]
    response = _post(server.url, body, content_type)
    assert response.status_code == status, response.text[:500]
    error = response.json()
    assert set(error) == {"error_code", "message"}
    for needle in needles:
        assert needle in error["message"], error["message"][:1000]
    for secret in (SECRET_ID, SECRET_DATE, "WEREWOLF", "moon", "xxxxxxxx", "1e+300", "\U0001F600"):
        assert secret not in response.text
    assert len(response.content) < 2000  # a message, not the request
    # still serving
    good = ScoringClient(server.url).score(_features(project, 2))
    np.testing.assert_allclose(good["probability"], _expected(project, _features(project, 2))["probability"],
                               rtol=0, atol=1e-12)
    assert server.alive()


def _raw_exchange(url: str, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Send a request by hand (headers, then chunks while the server reads) and return the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        answer = b""
        try:
            while not answer.endswith(b"}") and (part := sock.recv(65536)):
                answer += part
        except ConnectionResetError:
            pass
        return answer


@pytest.mark.slow
def test_huge_declared_body_gets_413_before_it_is_sent(server: ServedModel) -> None:
    """A 70 MB Content-Length is refused from the headers alone: the body is never sent."""
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 73400320\r\n\r\n")
    started = time.monotonic()
    answer = _raw_exchange(server.url, head, iter([b'{"dataframe_records": [']))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"max_request_bytes" in answer
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_chunked_body_over_the_limit_stops_being_read(server: ServedModel) -> None:
    """No Content-Length (chunked upload): reading stops at the limit with 413."""
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"[" * 65536

    def chunks() -> Iterator[bytes]:
        for _ in range(8):  # 512 KiB, twice the module's limit; the terminating chunk is never sent
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
            time.sleep(0.05)

    answer = _raw_exchange(server.url, head, chunks())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]


@pytest.mark.slow
def test_compressed_or_ambiguous_content_type_is_refused(project: dict[str, Any], server: ServedModel) -> None:
    """A gzip body (Content-Encoding) and two Content-Type headers: 415, not a guess."""
    import gzip

    body = json.dumps(split_payload(_features(project, 1))).encode()
    zipped = gzip.compress(body)
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(zipped))
    answer = _raw_exchange(server.url, head, iter([zipped]))
    assert answer.startswith(b"HTTP/1.1 415"), answer[:300]
    assert b"Content-Encoding" in answer
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    answer = _raw_exchange(server.url, head, iter([body]))
    assert answer.startswith(b"HTTP/1.1 415"), answer[:300]
    identity = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(body))
    answer = _raw_exchange(server.url, identity, iter([body]))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


@pytest.mark.slow
def test_stalled_body_gets_408_and_the_server_keeps_serving(project: dict[str, Any], server: ServedModel) -> None:
    """A body that stops arriving (Content-Length larger than what is sent) is answered 408 after
    serving.request_timeout_s (2 s here), instead of holding the connection forever."""
    body = json.dumps(split_payload(_features(project, 1))).encode()
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 100))
    started = time.monotonic()
    answer = _raw_exchange(server.url, head, iter([body]))
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"serving.request_timeout_s" in answer
    assert 1.5 < time.monotonic() - started < 10
    assert ScoringClient(server.url).score(_features(project, 1)).shape == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("sent", [b"", b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
                         ids=["nothing", "headers"])
def test_idle_or_half_sent_headers_are_closed(server: ServedModel, sent: bytes) -> None:
    """Slowloris: a connection that never completes its headers is closed after the deadline."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        time.sleep(0.5)
        sock.sendall(b"X-Slow: 1\r\n" if sent else b"")  # bytes now and then do not extend the deadline
        assert sock.recv(100) == b""  # closed by the server, not by our timeout
        assert 1.5 < time.monotonic() - started < 10



@pytest.mark.slow
def test_keep_alive_connection_outlives_the_header_deadline(project: dict[str, Any], server: ServedModel) -> None:
    """The deadline restarts after each response: one keep-alive connection, requests 0.8 s apart."""
    client = ScoringClient(server.url)
    frame = _features(project, 1)
    for _ in range(4):  # 3.2 s in all, longer than the 2 s deadline
        assert client.score(frame).shape == (1, 2)
        time.sleep(0.8)
    client.close()


@pytest.mark.slow
def test_routes_and_methods(server: ServedModel) -> None:
    assert requests.get(f"{server.url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/version", timeout=10).text == mlflow.__version__
    assert requests.get(f"{server.url}/invocations", timeout=10).status_code == 405
    assert requests.post(f"{server.url}/score", json={}, timeout=10).status_code == 404


@pytest.mark.slow
def test_content_type_with_charset_is_accepted(project: dict[str, Any], server: ServedModel) -> None:
    body = json.dumps(split_payload(_features(project, 3)))
    response = _post(server.url, body, "application/json; charset=utf-8")
    assert response.status_code == 200, response.text
    got = pd.DataFrame(response.json()["predictions"])
    np.testing.assert_array_equal(got["probability"], _expected(project, _features(project, 3))["probability"])


@pytest.mark.slow
def test_concurrent_clients_all_answered(project: dict[str, Any], server: ServedModel) -> None:
    """The benchmark's concurrent mode: every request of every client answered 200."""
    from pipelines.bench_serving import _concurrent

    rows = _features(project, 40)
    bodies = [json.dumps(split_payload(rows[i:i + 1])) for i in range(40)]
    latencies_ms, elapsed_s, errors = _concurrent(server.url, bodies, clients=4, budget_s=60)
    assert errors == []
    assert latencies_ms.size == 40
    assert 0 < elapsed_s < 60


@pytest.mark.slow
def test_readme_command_from_a_fresh_shell(project: dict[str, Any]) -> None:
    """The README's one-liner, in a shell whose PATH does not know the venv, from the project root."""
    paths, params = project["paths"], project["params"]
    venv = paths.root / ".venv"
    if not venv.exists():
        venv.symlink_to(sys.prefix)  # the project's .venv
    (paths.root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    port = free_port()
    log = paths.root / "readme-serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(["bash", "-c", shell_command(port=port)], cwd=paths.root,
                                   env={"PATH": "/usr/bin:/bin", "HOME": str(paths.root)},
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail(f"no answer on port {port}:\n{log.read_text()[-3000:]}")
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json=split_payload(_features(project, 1)),
                                 timeout=30)
        assert response.status_code == 200, response.text
        assert set(response.json()["predictions"][0]) == {"probability", "high_risk"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


# ---- batch scoring ------------------------------------------------------------------------------------

def test_score_batch_equals_in_process(project: dict[str, Any], tmp_path: Path) -> None:
    paths, params = project["paths"], project["params"]
    discharges = project["split"].test.sample(fraction=1.0, shuffle=True, seed=3)  # any row order
    source = tmp_path / "discharges.parquet"
    discharges.write_parquet(source)
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()  # --output's folder must exist (a missing one is refused: tests/e2e/test_crash_safety.py)
    summary = score_batch(paths, params, source, out)
    scores = pl.read_parquet(out)
    assert scores.columns == ["stay_id", "probability", "high_risk"]
    assert scores["stay_id"].to_list() == discharges["stay_id"].to_list()
    expected = _expected(project, discharges)
    np.testing.assert_array_equal(scores["probability"].to_numpy(), expected["probability"].to_numpy())
    np.testing.assert_array_equal(scores["high_risk"].to_numpy(), expected["high_risk"].to_numpy())
    assert summary["rows"] == discharges.height
    assert summary["flagged"] == int(expected["high_risk"].sum())
    assert summary["model_version"] == project["meta"].version
    first = out.read_bytes()
    score_batch(paths, params, source, out)
    assert out.read_bytes() == first  # deterministic


def test_score_batch_with_reasons_adds_the_reason_columns(project: dict[str, Any], tmp_path: Path) -> None:
    paths, params = project["paths"], project["params"]
    discharges = project["split"].test.head(300)
    source, out = tmp_path / "d.parquet", tmp_path / "scores.parquet"
    discharges.write_parquet(source)
    score_batch(paths, params, source, out, reasons=2)
    scores = pl.read_parquet(out)
    assert scores.columns == ["stay_id", "probability", "high_risk", "reason_1", "reason_1_contribution",
                              "reason_2", "reason_2_contribution"]
    expected = _expected(project, discharges)  # the reasons change no probability
    np.testing.assert_array_equal(scores["probability"].to_numpy(), expected["probability"].to_numpy())
    compiled = CompiledPipeline.build(project["bundle"])
    assert compiled is not None
    reasons = reason_columns(compiled, fdata.to_model_input(discharges), 2)
    assert scores["reason_1"].to_list() == reasons["reason_1"].tolist()
    np.testing.assert_array_equal(scores["reason_2_contribution"].to_numpy(), reasons["reason_2_contribution"])
    assert set(scores["reason_1"].drop_nulls()) <= set(fdata.FEATURES)
    assert (scores["reason_1_contribution"] >= scores["reason_2_contribution"]).all()


def test_score_batch_in_slices_equals_one_call(project: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.serving as serving_module

    paths, params = project["paths"], project["params"]
    source = tmp_path / "discharges.parquet"
    project["split"].test.write_parquet(source)
    whole, sliced = tmp_path / "whole.parquet", tmp_path / "sliced.parquet"
    score_batch(paths, params, source, whole)
    monkeypatch.setattr(serving_module, "PREDICT_CHUNK_ROWS", 37)  # many slices, a short last one
    assert project["split"].test.height % 37
    score_batch(paths, params, source, sliced)
    assert sliced.read_bytes() == whole.read_bytes()


def test_score_batch_accepts_features_only_and_categorical_dtypes(project: dict[str, Any], tmp_path: Path) -> None:
    frame = project["split"].test.head(50).select([fdata.KEY, *fdata.FEATURES]).with_columns(
        pl.col("department").cast(pl.Categorical))
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    score_batch(project["paths"], project["params"], source, tmp_path / "o.parquet")
    scored = pl.read_parquet(tmp_path / "o.parquet")
    np.testing.assert_array_equal(scored["probability"].to_numpy(), _expected(project, frame)["probability"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("age"), "missing column(s) age"),
        (lambda f: f.with_columns(pl.col("age").cast(pl.String)), "column 'age' has type String"),
        (lambda f: f.with_columns(pl.col("department").cast(pl.Int32)), "column 'department' has type Int32"),
        (lambda f: f.with_columns(ward=pl.lit("B2")), "ward are not in the feature contract"),
        (lambda f: f.with_columns(stay_cost=pl.when(pl.int_range(pl.len()) == 3).then(None)
                                  .otherwise(pl.col("stay_cost"))), "column 'stay_cost' has 1 null"),
        (lambda f: f.with_columns(stay_cost=pl.lit(float("nan"))), "column 'stay_cost' has 20 NaN"),
        (lambda f: f.with_columns(stay_id=pl.lit("A")), "not unique"),
        (lambda f: f.head(0), "no rows"),
        (lambda f: _at_row(f, 3, age=-5), "column 'age', row 3: out of range; allowed: whole numbers in [18, 115]"),
        (lambda f: _at_row(f, 4, age=200), "column 'age', row 4: out of range"),
        (lambda f: f.with_columns(sex=pl.lit(7, pl.Int32)), "column 'sex', 20 rows (first: row 0)"),
        (lambda f: _at_row(f, 5, stay_cost=-1e9), "column 'stay_cost', row 5: out of range; allowed: finite"),
        (lambda f: _at_row(f, 6, stay_cost=1e300), "column 'stay_cost', row 6: out of range"),
        (lambda f: _at_row(f, 7, department="99"), "column 'department', row 7: unknown value; allowed: one of '75'"),
        (lambda f: _at_row(f, 8, department="\U0001F600"), "column 'department', row 8: unknown value"),
        (lambda f: _at_row(f, 9, diagnosis_group="WEREWOLF"), "column 'diagnosis_group', row 9: unknown value"),
        (lambda f: _at_row(f, 2, hospital_category="x" * 100), "column 'hospital_category', row 2: longer than 64"),
        (lambda f: _at_row(f, 1, stay_id="S" * 100), "column 'stay_id', row 1: longer than 64"),
        (lambda f: _at_row(f, 0, lace_score=20), "column 'lace_score', row 0: out of range; allowed: whole numbers "
                                                 "in [0, 19]"),
        (lambda f: f.with_columns(pl.col("stay_cost").cast(pl.Decimal(12, 2))),
         "column 'stay_cost' has type Decimal"),
        (lambda f: f.with_columns(**{"bad\ncolumn": pl.lit(1)}), "column(s) bad\\ncolumn are not in"),
    ],
    ids=["missing", "int-as-string", "string-as-int", "extra", "null", "nan", "duplicate-id", "empty",
         "age-negative", "age-200", "sex-7", "cost-negative", "cost-huge", "department-99", "department-emoji",
         "unknown-category", "long-string", "long-id", "lace-20", "decimal", "newline-in-name"],
)
def test_score_batch_refuses_bad_input(project: dict[str, Any], tmp_path: Path, change: Any, message: str) -> None:
    source = tmp_path / "in.parquet"
    change(project["split"].test.head(20)).write_parquet(source)
    with pytest.raises(ScoringInputError) as caught:
        score_batch(project["paths"], project["params"], source, tmp_path / "o.parquet")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    for secret in ("WEREWOLF", "\U0001F600", "xxxxxxxx", "SSSSSSSS", "1e+300", "-1000000000"):
        assert secret not in str(caught.value)
    assert not (tmp_path / "o.parquet").exists()


def _at_row(frame: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    at = pl.int_range(pl.len()) == row
    return frame.with_columns(**{name: pl.when(at).then(pl.lit(value)).otherwise(pl.col(name)).cast(frame.schema[name])
                                 for name, value in values.items()})


def test_score_command_exits_2_with_one_line(project: dict[str, Any], tmp_path: Path) -> None:
    """`python -m pipelines score` on out-of-contract rows: exit 2, one line naming column, row, range."""
    paths, params = project["paths"], project["params"]
    source = tmp_path / "in.parquet"
    _at_row(project["split"].test.head(20), 12, age=200).write_parquet(source)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pipelines", "--root", str(paths.root), "--params", str(params_file),
                           "score", "--input", str(source), "--output", str(tmp_path / "o.parquet")],
                          capture_output=True, text=True, timeout=300,
                          env={**serve_env(paths), "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: score: {source}: column 'age', row 12: out of range; allowed: whole numbers in [18, 115]"]
    assert not (tmp_path / "o.parquet").exists()


def test_score_batch_refuses_a_non_parquet_file(project: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    source.write_text("stay_id;age\nA;71\n")
    with pytest.raises(ScoringInputError, match="not a readable Parquet file"):
        score_batch(project["paths"], project["params"], source, tmp_path / "o.parquet")
