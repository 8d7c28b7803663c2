"""Serving the champion: input checks of the pyfunc, a real `mlflow models serve` process on a free
loopback port (good and bad payloads, the README one-liner from a fresh shell), batch scoring.

The model is trained by the real `train` stage on a tiny synthetic mart into tmp_path, and the
alias `champion` is set on it (promotion itself is tested in test_promote.py).
"""

from __future__ import annotations

import json
import math
import os
import signal
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
from feature_fixtures import write_fixture

from pipelines import contracts
from pipelines.config import Params, Paths
from pipelines.model import data as fdata
from pipelines.model import pyfunc_model, tracking
from pipelines.model.pyfunc_model import CompiledPipeline, InputError, check_input, predict_frame
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
from pipelines.train import load_model, run_train

NAME = "idf-readmission-rf"
TRAIN: dict[str, Any] = {
    "model_name": NAME,
    "n_trials": 2,
    "optuna_plots": False,
    "search": {"n_estimators": [20, 40], "max_depth": [4, 10], "min_samples_leaf": [10, 60]},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("serving")
    write_fixture(root, n_rows=3000, seed=11)
    paths = Paths(root)
    params = Params.model_validate({"train": TRAIN})
    result = run_train(paths, params)
    client = tracking.connect(paths)
    client.set_registered_model_alias(NAME, "champion", result["model_version"])
    bundle, meta = load_model(paths)
    split = fdata.temporal_split(fdata.load_features(paths), pd.Timestamp(meta["train_end"]).date(),
                                 pd.Timestamp(meta["valid_end"]).date())
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
    cmd = serve_command(paths, params, "127.0.0.1", 5001)
    assert cmd[0] == str(venv_bin() / "mlflow")
    assert cmd[1:] == ["models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
                       "-h", "127.0.0.1", "-p", "5001"]
    env = serve_env(paths, base={"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep)[0] == str(venv_bin())
    assert (venv_bin() / "uvicorn").exists()  # mlflow execs it from PATH
    assert env["MLFLOW_TRACKING_URI"] == env["MLFLOW_REGISTRY_URI"] == tracking.tracking_uri(paths)
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert champion_uri(Params.model_validate({"promote": {"champion_alias": "prod"}})).endswith("@prod")
    assert 'mlflow models serve -m "models:/idf-readmission-rf@champion"' in shell_command(params)


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
        ({"age": "old"}, "column 'age': expected an integer, got str 'old'"),
        ({"age": 65.5}, "column 'age': expected an integer, got 65.5"),
        ({"age": True}, "column 'age': expected an integer, got a boolean"),
        ({"age": math.nan}, "column 'age': null/NaN at row 0"),
        ({"stay_cost": None}, "column 'stay_cost': null/NaN"),
        ({"stay_cost": math.inf}, "column 'stay_cost': infinite value"),
        ({"department": 93}, "column 'department': expected a string, got int 93"),
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
    assert CompiledPipeline.build({**bundle, "pipeline": object()}) is None  # another shape: sklearn path


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


# ---- a real server ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(project: dict[str, Any]) -> Iterator[ServedModel]:
    served = ServedModel.start(project["paths"], project["params"])
    try:
        yield served
    finally:
        served.stop()
        assert not served.group_alive()  # the whole group is gone (mlflow, uvicorn)


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


def _bad_payloads(row: dict[str, Any]) -> list[tuple[str, bytes | str, str, int, str, bool]]:
    """(id, body, content type, status, text the error must contain, needs the raw input)."""
    def records(**change: Any) -> str:
        changed = {k: v for k, v in row.items() if change.get(k, 0) is not ...}
        changed.update({k: v for k, v in change.items() if v is not ...})
        return json.dumps({"dataframe_records": [changed]})  # allow_nan: NaN / Infinity literals

    json_type = "application/json"
    return [
        ("missing-column", records(age=...), json_type, 400, "age", False),
        ("wrong-type-int", records(age="old"), json_type, 400, "age", False),
        ("wrong-type-str", records(department=93), json_type, 400, "department", False),
        ("empty-body", "", json_type, 400, "valid JSON", False),
        ("non-json", "age=71&sex=1", json_type, 400, "valid JSON", False),
        ("not-an-object", json.dumps([row]), json_type, 400, "dataframe_records", False),
        ("unknown-top-level-key", json.dumps({"rows": [row]}), json_type, 400, "dataframe_split", False),
        ("split-bad-shape", json.dumps({"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}), json_type,
         400, "dataframe_split", False),
        ("nan-age", records(age=math.nan), json_type, 400, "age", False),
        ("nan-cost", records(stay_cost=math.nan), json_type, 400, "stay_cost", False),
        ("null-cost", records(stay_cost=None), json_type, 400, "stay_cost", False),
        ("infinite-cost", records(stay_cost=math.inf), json_type, 400, "stay_cost", False),
        ("null-department", records(department=None), json_type, 400, "department", False),
        ("no-rows", json.dumps({"dataframe_records": []}), json_type, 400, "no rows", True),
        ("extra-column", records(ward="B2"), json_type, 400, "unexpected column(s): ward", True),
        ("label-column", records(readmitted_30d=1), json_type, 400, "readmitted_30d", True),
        ("fraction-for-int", records(age=71.5), json_type, 400, "age", True),
        ("bool-for-int", records(emergency_admission=True), json_type, 400, "emergency_admission", True),
        ("text-plain", "age,sex\n71,1\n", "text/plain", 415, "content types", False),
    ]


BAD_IDS = [case[0] for case in _bad_payloads({})]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", BAD_IDS)
def test_bad_payload_gets_4xx_and_the_server_keeps_serving(project: dict[str, Any], server: ServedModel,
                                                           case_id: str) -> None:
    cases = {case[0]: case[1:] for case in _bad_payloads(_one_row(project))}
    body, content_type, status, needle, needs_raw = cases[case_id]
    if needs_raw and not project["raw_input_visible"]:
        pytest.xfail("train.py logs an input schema: MLflow drops / casts this before the model's checks")
    client = ScoringClient(server.url)
    response = client.post(body, content_type)
    assert response.status_code == status, response.text[:500]
    text = response.text
    if content_type == "application/json":
        error = response.json()
        assert error["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
        text = error["message"]
    assert needle in text, text[:1000]
    # still serving
    good = ScoringClient(server.url).score(_features(project, 2))
    np.testing.assert_allclose(good["probability"], _expected(project, _features(project, 2))["probability"],
                               rtol=0, atol=1e-12)
    assert server.alive()


@pytest.mark.slow
def test_readme_command_from_a_fresh_shell(project: dict[str, Any]) -> None:
    """The README's one-liner, in a shell whose PATH does not know the venv, from the project root."""
    paths, params = project["paths"], project["params"]
    venv = paths.root / ".venv"
    if not venv.exists():
        venv.symlink_to(sys.prefix)  # the project's .venv
    port = free_port()
    log = paths.root / "readme-serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(["bash", "-c", shell_command(params, port=port)], cwd=paths.root,
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
    out.parent.mkdir()  # --output's folder must exist (a missing one is refused: tests/test_crash_safety.py)
    summary = score_batch(paths, params, source, out)
    scores = pl.read_parquet(out)
    assert scores.columns == ["stay_id", "probability", "high_risk"]
    assert scores["stay_id"].to_list() == discharges["stay_id"].to_list()
    expected = _expected(project, discharges)
    np.testing.assert_array_equal(scores["probability"].to_numpy(), expected["probability"].to_numpy())
    np.testing.assert_array_equal(scores["high_risk"].to_numpy(), expected["high_risk"].to_numpy())
    assert summary["rows"] == discharges.height
    assert summary["flagged"] == int(expected["high_risk"].sum())
    assert summary["model_version"] == project["meta"]["version"]
    first = out.read_bytes()
    score_batch(paths, params, source, out)
    assert out.read_bytes() == first  # deterministic


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
    ],
    ids=["missing", "int-as-string", "string-as-int", "extra", "null", "nan", "duplicate-id", "empty"],
)
def test_score_batch_refuses_bad_input(project: dict[str, Any], tmp_path: Path, change: Any, message: str) -> None:
    source = tmp_path / "in.parquet"
    change(project["split"].test.head(20)).write_parquet(source)
    with pytest.raises(ScoringInputError) as caught:
        score_batch(project["paths"], project["params"], source, tmp_path / "o.parquet")
    assert message in str(caught.value)
    assert not (tmp_path / "o.parquet").exists()


def test_score_batch_refuses_a_non_parquet_file(project: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    source.write_text("stay_id;age\nA;71\n")
    with pytest.raises(ScoringInputError, match="not a readable Parquet file"):
        score_batch(project["paths"], project["params"], source, tmp_path / "o.parquet")
