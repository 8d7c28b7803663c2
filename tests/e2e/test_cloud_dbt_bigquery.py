"""`dbt build --target bigquery` against crucible-emulator, on clean tables loaded by `publish`.

The environment variable names are read from dbt/profiles.yml (bigquery output) and from the
`clean` source's schema, so the test follows the dbt project rather than guessing. The same
clean data is also built on the default DuckDB target and the feature mart compared.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.emulators import ROOT, Emulator, crucible_emulator

pytestmark = [pytest.mark.slow]

DBT_DIR = ROOT / "dbt"
DBT = Path(sys.executable).parent / "dbt"
PROJECT = "local-project"
WAREHOUSE_DATASET = "snds_warehouse"
CLEAN_DATASET = "clean"
PATIENTS = 250  # small: crucible loads CSV rows one by one
DBT_TIMEOUT = 900
ENV_VAR = re.compile(r"""env_var\(\s*['"]([A-Za-z0-9_]+)['"]""")
# What the bigquery output must take from the environment to reach an emulator.
REQUIRED_KEYS = ("method", "project", "api_endpoint", "token")
FACT_TABLES = ("fct_stays", "fct_readmissions", "fct_patient_pathway")


def _env_names(mapping: dict[str, Any]) -> dict[str, str]:
    """{profile key: env var name} for the values written as env_var('NAME', ...)."""
    names = {}
    for key, value in mapping.items():
        match = ENV_VAR.search(str(value))
        if match:
            names[key] = match.group(1)
    return names


@dataclass(frozen=True)
class DbtBigQuery:
    """What the dbt project reads from the environment on BigQuery."""

    profile_vars: dict[str, str]  # profile key -> env var
    clean_dataset_var: str | None  # env var of the `clean` source's schema, if any
    clean_dataset: str


def _read_dbt_project() -> DbtBigQuery:
    if not (DBT_DIR / "dbt_project.yml").exists() or not any((DBT_DIR / "models").rglob("*.sql")):
        pytest.fail("dbt/ has no project or no models")
    profiles = yaml.safe_load((DBT_DIR / "profiles.yml").read_text(encoding="utf-8"))
    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    outputs = profiles.get(project["profile"], {}).get("outputs", {})
    if "bigquery" not in outputs:
        pytest.fail("dbt/profiles.yml has no `bigquery` output")
    names = _env_names(outputs["bigquery"])
    missing = [key for key in REQUIRED_KEYS if key not in names]
    if missing:
        pytest.fail(
            "dbt/profiles.yml bigquery output does not read "
            + ", ".join(missing)
            + " from env vars, so it cannot be pointed at the BigQuery emulator; needed e.g. "
            "`api_endpoint: \"{{ env_var('SNDS_BQ_API_ENDPOINT', '') }}\"` and "
            "`token: \"{{ env_var('SNDS_BQ_TOKEN', '') }}\"` (used with method oauth-secrets)"
        )
    clean_var, clean_dataset = None, CLEAN_DATASET
    for path in (DBT_DIR / "models").rglob("*.yml"):
        for source in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("sources", []) or []:
            if source.get("name") == "clean" and source.get("schema"):
                schema = str(source["schema"])
                match = ENV_VAR.search(schema)
                if match:
                    clean_var = match.group(1)
                elif "{" not in schema:
                    clean_dataset = schema
    return DbtBigQuery(names, clean_var, clean_dataset)


def _bigquery_env(dbt: DbtBigQuery, crucible: Emulator) -> dict[str, str]:
    values = {
        "method": "oauth-secrets",
        "token": "fake-token",
        "api_endpoint": crucible.url,
        "project": PROJECT,
        "dataset": WAREHOUSE_DATASET,
        "location": "EU",
        "threads": "2",
        "job_execution_timeout_seconds": "300",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNDS_BQ_", "BQ_", "GOOGLE_"))}
    env |= {dbt.profile_vars[key]: value for key, value in values.items() if key in dbt.profile_vars}
    if dbt.clean_dataset_var:
        env[dbt.clean_dataset_var] = dbt.clean_dataset
    env |= {"DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"}
    return env


def _dbt(args: list[str], env: dict[str, str], cwd: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [str(DBT), *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
               "--target-path", str(out / "target"), "--log-path", str(out / "logs")]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=DBT_TIMEOUT,
                          check=False)


def _failures(target: Path) -> list[str]:
    """'node: status: message' for every node that errored or failed, from run_results.json."""
    path = target / "run_results.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text())["results"]
    failed = [f"{r['unique_id']}: {r['status']}: {(r.get('message') or '')[:300]}"
              for r in results if r["status"] not in ("success", "pass", "warn", "skipped")]
    skipped = sum(r["status"] == "skipped" for r in results)
    return [*failed, f"({skipped} nodes skipped after them)"] if failed and skipped else failed


@dataclass(frozen=True)
class Built:
    crucible: Emulator
    env: dict[str, str]
    data_root: Path
    work: Path


@pytest.fixture(scope="module")
def dbt_project() -> DbtBigQuery:
    return _read_dbt_project()


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small project root with data/clean written by the real generate + clean stages."""
    from pipelines.clean import run_clean
    from pipelines.config import Params, Paths
    from pipelines.generate import run_generate

    root = tmp_path_factory.mktemp("dbt-bq-data")
    data = Params().model_dump()
    data["generate"]["patients"] = PATIENTS
    data["generate"]["hospitals"] = 8
    params = Params.model_validate(data)
    run_generate(Paths(root), params, progress=False)
    run_clean(Paths(root), params.clean)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, dbt_project: DbtBigQuery, clean_data: Path) -> Iterator[Built]:
    dbt = dbt_project
    from pipelines.cloud.publish import run_publish
    from pipelines.cloud.settings import CloudSettings
    from pipelines.config import Paths

    work = tmp_path_factory.mktemp("dbt-bq")
    with crucible_emulator(work) as crucible:
        settings = CloudSettings.from_env({"BQ_PROJECT": PROJECT, "BQ_DATASET": dbt.clean_dataset,
                                           "BQ_API_ENDPOINT": crucible.url})
        run_publish(Paths(clean_data), via="csv", settings=settings)
        env = _bigquery_env(dbt, crucible)
        result = _dbt(["build", "--target", "bigquery"], env, ROOT, work / "bigquery")
        failures = _failures(work / "bigquery" / "target")
        report = (
            "dbt build --target bigquery failed on crucible:\n" + "\n".join(failures)
            + f"\n--- stdout tail ---\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
        )
        assert not failures, report
        assert result.returncode == 0, report
        yield Built(crucible, env, clean_data, work)


def _bq(built: Built) -> Any:
    from pipelines.cloud.settings import CloudSettings, bigquery_client

    return bigquery_client(CloudSettings.from_env({"BQ_PROJECT": PROJECT, "BQ_API_ENDPOINT": built.crucible.url}))


@pytest.mark.timeout(1500)
def test_dbt_build_bigquery_partitions_and_clusters_facts(built: Built) -> None:
    client = _bq(built)
    try:
        for name in FACT_TABLES:
            table = client.get_table(f"{PROJECT}.marts.{name}")
            assert table.time_partitioning is not None, name
            assert (table.time_partitioning.field, table.time_partitioning.type_) == ("admission_date", "MONTH")
            assert table.clustering_fields == ["department"], name
            assert table.num_rows > 0, name
        features = client.get_table(f"{PROJECT}.marts.ml_readmission_features")
        assert features.num_rows > 0
    finally:
        client.close()


FEATURE_SUMMARY = (
    "select count(*) as n, sum(readmitted_30d) as readmitted, sum(lace_score) as lace, "
    "sum(charlson_score) as charlson, sum(prior_stays_12m) as prior_12m, round(sum(stay_cost), 2) as cost "
    "from {table}"
)


@pytest.mark.timeout(1500)
def test_bigquery_feature_mart_matches_duckdb(built: Built) -> None:
    """The same models on the same clean data give the same feature mart on both engines."""
    import duckdb

    local = built.work / "duckdb"
    env = {**built.env, "SNDS_DUCKDB_PATH": str(local / "warehouse.duckdb")}
    local.mkdir(exist_ok=True)
    clean_dir = json.dumps({"clean_dir": str(built.data_root / "data" / "clean")})
    result = _dbt(["build", "--target", "local", "--vars", clean_dir], env, built.data_root, local)
    assert result.returncode == 0, "local DuckDB build failed:\n" + "\n".join(_failures(local / "target"))

    with duckdb.connect(str(local / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute(FEATURE_SUMMARY.format(table="marts.ml_readmission_features")).fetchone()
        assert row is not None
        names = [d[0] for d in con.description]
    on_duckdb = dict(zip(names, row, strict=True))
    client = _bq(built)
    try:
        rows = client.query(FEATURE_SUMMARY.format(table=f"`{PROJECT}.marts.ml_readmission_features`")).result()
        on_bigquery = dict(next(iter(rows)).items())
    finally:
        client.close()
    assert on_bigquery["n"] == on_duckdb["n"] > 0
    for key in ("readmitted", "lace", "charlson", "prior_12m"):
        assert on_bigquery[key] == on_duckdb[key], key
    assert float(on_bigquery["cost"]) == pytest.approx(float(on_duckdb["cost"]), rel=1e-9)


@pytest.mark.timeout(1500)
def test_feature_mart_exports_from_bigquery_with_the_contract(built: Built, tmp_path: Path) -> None:
    import polars as pl

    from pipelines.cloud.features import export_features
    from pipelines.cloud.settings import CloudSettings
    from pipelines.config import Paths
    from pipelines.contracts import FEATURE_SCHEMA

    settings = CloudSettings.from_env({"BQ_PROJECT": PROJECT, "BQ_API_ENDPOINT": built.crucible.url})
    summary = export_features(Paths(tmp_path), settings=settings, dataset="marts")
    frame = pl.read_parquet(tmp_path / "data" / "features" / "ml_readmission_features.parquet")
    assert dict(frame.schema) == FEATURE_SCHEMA
    assert summary["rows"] == frame.height > 0
    assert frame["stay_id"].is_unique().all()
