"""`publish`: the clean tables into BigQuery, against crucible-emulator (and gcp-storage-emulator).

Unit tests cover the Polars -> BigQuery schema mapping, the CSV encoding and the settings;
the slow tests load real tables through google-cloud-bigquery into the emulator and read them back.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.cloud import publish
from pipelines.cloud.settings import CloudConfigError, CloudSettings
from pipelines.config import Paths
from pipelines.contracts import CLEAN_SCHEMAS
from tests.e2e.emulators import Emulator, crucible_emulator, crucible_version, gcs_emulator, tiny_clean_tables

PROJECT = "local-project"
DATASET = "snds_clean_test"


# --- unit -----------------------------------------------------------------------------------------
def test_every_clean_column_has_a_bigquery_type() -> None:
    for table, schema in CLEAN_SCHEMAS.items():
        columns = publish.bigquery_columns(table)
        assert [name for name, _ in columns] == list(schema)
        assert {kind for _, kind in columns} <= {"STRING", "INT64", "FLOAT64", "DATE", "BOOL"}
    stays = dict(publish.bigquery_columns("stays"))
    assert stays["admission_date"] == "DATE"
    assert stays["age"] == "INT64"
    assert stays["stay_cost"] == "FLOAT64"
    assert stays["department"] == "STRING"


def test_type_mapping_covers_temporal_and_rejects_unknown() -> None:
    assert publish.bigquery_type(pl.Datetime("us", "UTC")) == "TIMESTAMP"
    assert publish.bigquery_type(pl.Datetime("us")) == "DATETIME"
    assert publish.bigquery_type(pl.Boolean()) == "BOOL"
    with pytest.raises(publish.PublishError):
        publish.bigquery_type(pl.List(pl.Int64))
    with pytest.raises(publish.PublishError, match="unknown clean table"):
        publish.bigquery_columns("nope")


def test_schema_fields_are_nullable_and_in_contract_order() -> None:
    fields = publish.bigquery_schema("dispensings")
    assert [f.name for f in fields] == list(CLEAN_SCHEMAS["dispensings"])
    assert {f.mode for f in fields} == {"NULLABLE"}


def test_csv_encoding_keeps_nulls_empty_strings_commas_and_dates() -> None:
    text = publish.csv_bytes("hospitals", tiny_clean_tables()["hospitals"]).decode()
    assert text.splitlines()[0] == ",".join(CLEAN_SCHEMAS["hospitals"])
    assert '"Hôpital Avicenne, Bobigny"' in text
    assert ',"",' in text  # empty string stays distinct from NULL (an empty unquoted field)
    stays = publish.csv_bytes("stays", tiny_clean_tables()["stays"]).decode()
    assert "2023-01-05" in stays
    assert "e-" not in stays
    assert "e+" not in stays


def test_csv_refuses_schema_drift_and_line_breaks() -> None:
    hospitals = tiny_clean_tables()["hospitals"]
    with pytest.raises(publish.PublishError, match="does not match"):
        publish.csv_bytes("hospitals", hospitals.with_columns(pl.col("beds").cast(pl.String)))
    with pytest.raises(publish.PublishError, match="line breaks"):
        publish.csv_bytes("hospitals", hospitals.with_columns(pl.lit("a\nb").alias("hospital_name")))


def test_settings_read_env_with_dbt_profile_fallbacks() -> None:
    s = CloudSettings.from_env({"SNDS_BQ_PROJECT": "p", "SNDS_BQ_DATASET": "warehouse",
                                "SNDS_BQ_CLEAN_DATASET": "d", "BIGQUERY_EMULATOR_HOST": "127.0.0.1:9"})
    assert (s.project, s.dataset, s.location, s.bigquery_endpoint) == ("p", "d", "EU", "http://127.0.0.1:9")
    assert CloudSettings.from_env({"SNDS_BQ_DATASET": "warehouse"}).dataset == "clean"  # dbt source default
    s = CloudSettings.from_env({"BQ_PROJECT": "a", "SNDS_BQ_PROJECT": "b", "BQ_LOCATION": "europe-west9",
                                "GCS_BUCKET": "bkt", "GCS_PREFIX": "/snds/clean/"})
    assert (s.project, s.location, s.bigquery_endpoint, s.emulated) == ("a", "europe-west9", None, False)
    assert s.gcs_uri("stays") == "gs://bkt/snds/clean/stays.parquet"
    with pytest.raises(CloudConfigError, match="GCS_BUCKET"):
        CloudSettings.from_env({}).gcs_uri("stays")


def test_anonymous_credentials_only_for_an_emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from google.auth.credentials import AnonymousCredentials

    from pipelines.cloud.settings import bigquery_client, storage_client

    emulated = CloudSettings.from_env({"BQ_PROJECT": "p", "BQ_API_ENDPOINT": "127.0.0.1:9",
                                       "STORAGE_EMULATOR_HOST": "http://127.0.0.1:8"})
    assert isinstance(bigquery_client(emulated)._credentials, AnonymousCredentials)
    assert isinstance(storage_client(emulated)._credentials, AnonymousCredentials)
    # Without an endpoint: Application Default Credentials, and a clear error when there are none.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    for name in ("BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CloudConfigError, match="application-default login"):
        bigquery_client(CloudSettings.from_env({"BQ_PROJECT": "p"}))


def test_run_publish_reports_a_missing_clean_table(tmp_path: Path) -> None:
    with pytest.raises(publish.PublishError, match="run the clean stage first"):
        publish.run_publish(Paths(tmp_path), via="csv", settings=CloudSettings.from_env({"BQ_PROJECT": "p"}))


# --- against the emulators ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crucible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with crucible_emulator(tmp_path_factory.mktemp("crucible")) as emulator:
        yield emulator


def _settings(bq: Emulator, gcs: Emulator | None = None, dataset: str = DATASET) -> CloudSettings:
    env = {"BQ_PROJECT": PROJECT, "BQ_DATASET": dataset, "BQ_LOCATION": "EU", "BQ_API_ENDPOINT": bq.url}
    if gcs is not None:
        env |= {"GCS_BUCKET": "snds-publish-test", "GCS_PREFIX": "clean", "STORAGE_EMULATOR_HOST": gcs.url}
    return CloudSettings.from_env(env)


def _query(settings: CloudSettings, sql: str) -> list[dict[str, Any]]:
    from pipelines.cloud.settings import bigquery_client

    client = bigquery_client(settings)
    try:
        return [dict(row.items()) for row in client.query(sql).result(timeout=60)]
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_publish_csv_loads_typed_tables_and_reloads_idempotently(crucible: Emulator, tmp_path: Path) -> None:
    frames = tiny_clean_tables()
    paths = Paths(tmp_path)
    paths.clean.mkdir(parents=True)
    for name, frame in frames.items():
        frame.write_parquet(paths.clean / f"{name}.parquet")
    settings = _settings(crucible)
    table = f"`{PROJECT}.{DATASET}"

    for _ in range(3):  # first load, then two reloads: WRITE_TRUNCATE keeps the same rows
        summary = publish.run_publish(paths, via="csv", settings=settings)
        assert summary["via"] == "csv"
        assert summary["emulator"] is True
        assert {t: v["rows"] for t, v in summary["tables"].items()} == {t: f.height for t, f in frames.items()}
        for name, frame in frames.items():
            count = _query(settings, f"SELECT COUNT(*) AS n FROM {table}.{name}`")[0]["n"]
            assert count == frame.height, name

    stays = _query(settings, f"SELECT stay_id, admission_date, stay_cost, related_icd10_code, age "
                             f"FROM {table}.stays` ORDER BY stay_id")
    assert stays[0] == {"stay_id": "750100042-1", "admission_date": date(2023, 6, 1), "stay_cost": 2800.25,
                        "related_icd10_code": None, "age": 63}
    hospitals = _query(settings, f"SELECT hospital_name, category, beds FROM {table}.hospitals` ORDER BY beds")
    assert hospitals == [
        {"hospital_name": "Hôpital Avicenne, Bobigny", "category": "AP-HP/CHU", "beds": 520},
        {"hospital_name": "Hôpital Lariboisière", "category": "", "beds": 870},
    ]
    totals = _query(settings, f"SELECT SUM(amount) AS amount, COUNTIF(atc_code IS NULL) AS no_atc "
                              f"FROM {table}.dispensings`")[0]
    assert totals["amount"] == pytest.approx(113.37)
    assert totals["no_atc"] == 1

    # The tables carry the contract's types, not strings.
    from pipelines.cloud.settings import bigquery_client

    client = bigquery_client(settings)
    try:
        schema = {f.name: f.field_type for f in client.get_table(f"{PROJECT}.{DATASET}.stays").schema}
    finally:
        client.close()
    assert schema["admission_date"] == "DATE"
    assert schema["rsa_num"] in ("INTEGER", "INT64")
    assert schema["stay_cost"] in ("FLOAT", "FLOAT64")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_publish_parquet_via_gcs(crucible: Emulator, tmp_path: Path) -> None:
    """Production path: Parquet to gs://, then a load job from the URI. The GCS half runs against
    gcp-storage-emulator for real; the load half needs an emulator that accepts it."""
    from google.api_core.exceptions import BadRequest

    from pipelines.cloud.settings import storage_client

    with gcs_emulator(tmp_path) as gcs:
        settings = _settings(crucible, gcs, dataset=f"{DATASET}_parquet")
        store = storage_client(settings)
        if store.lookup_bucket(settings.bucket) is None:
            store.create_bucket(settings.bucket)
        frames = {"hospitals": tiny_clean_tables()["hospitals"]}

        uri = publish.stage_parquet(store, settings, "hospitals", frames["hospitals"])
        assert uri == "gs://snds-publish-test/clean/hospitals.parquet"
        staged = store.bucket(settings.bucket).blob("clean/hospitals.parquet").download_as_bytes()
        back = pl.read_parquet(io.BytesIO(staged))
        assert back.columns == list(CLEAN_SCHEMAS["hospitals"])
        assert back.height == 2
        assert back.schema["beds"] == pl.Int64  # cast to BigQuery's INT64 before staging

        try:
            summary = publish.publish_frames(frames, settings, via="parquet", gcs=store)
        except BadRequest as exc:
            if "Not supported by Crucible" not in str(exc):
                raise
            pytest.skip(
                f"crucible-emulator {crucible_version()} refuses load jobs from GCS URIs and Parquet loads "
                f"(only CSV through an upload): {exc.message}; the Parquet upload to gcp-storage-emulator was "
                "checked, the BigQuery load from gs:// was not"
            )
        assert summary["tables"]["hospitals"]["rows"] == 2
