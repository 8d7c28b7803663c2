"""`publish`: load the clean tables (data/clean/*.parquet) into BigQuery with google-cloud-bigquery.

Two ways in, both with an explicit schema derived from `contracts.CLEAN_SCHEMAS` and
WRITE_TRUNCATE, so a reload replaces the table (idempotent: same rows, same schema):

- ``parquet`` (production): each table is written as Parquet to
  ``gs://$GCS_BUCKET/$GCS_PREFIX/<table>.parquet`` and BigQuery loads it from GCS.
- ``csv``: each table is streamed as CSV through a load-job upload. It needs no bucket, and it is
  what the local BigQuery emulator (crucible) accepts; it refuses Parquet and loads from GCS.

Settings come from environment variables (see `pipelines.cloud.settings`); run it with
``python -m pipelines.cloud.publish [--via csv]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.cloud.settings import CloudConfigError, CloudSettings, bigquery_client, storage_client
from pipelines.config import Params, Paths
from pipelines.contracts import CLEAN_SCHEMAS
from pipelines.errors import PipelineInputError

VIAS = ("parquet", "csv")
DEFAULT_VIA = "parquet"
JOB_TIMEOUT_SECONDS = 900.0


class PublishError(PipelineInputError, RuntimeError):
    """A clean table cannot be published as it is (missing file, schema drift, rows lost)."""


# --- schema ---------------------------------------------------------------------------------------
def bigquery_type(dtype: pl.DataType) -> str:
    """The BigQuery (GoogleSQL) type that holds a Polars dtype without loss."""
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32):
        return "INT64"
    if dtype in (pl.Float32, pl.Float64):
        return "FLOAT64"
    if dtype in (pl.String, pl.Categorical, pl.Enum):
        return "STRING"
    if dtype == pl.Boolean:
        return "BOOL"
    if dtype == pl.Date:
        return "DATE"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMP" if dtype.time_zone else "DATETIME"
    if isinstance(dtype, pl.Decimal):
        return "NUMERIC" if (dtype.precision or 38) <= 29 else "BIGNUMERIC"
    raise PublishError(f"no BigQuery type for Polars dtype {dtype}")


def bigquery_columns(table: str) -> list[tuple[str, str]]:
    """(column, BigQuery type) of a clean table, in contract order."""
    try:
        schema = CLEAN_SCHEMAS[table]
    except KeyError as exc:
        raise PublishError(f"unknown clean table {table!r}; expected one of {sorted(CLEAN_SCHEMAS)}") from exc
    return [(name, bigquery_type(dtype)) for name, dtype in schema.items()]


def bigquery_schema(table: str) -> list[Any]:
    """The explicit load schema (google.cloud.bigquery.SchemaField list), every column NULLABLE."""
    from google.cloud import bigquery

    return [bigquery.SchemaField(name, kind, mode="NULLABLE") for name, kind in bigquery_columns(table)]


def _storage_frame(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame checked against its contract and cast to BigQuery's storage widths."""
    expected = CLEAN_SCHEMAS[table]
    actual = dict(frame.schema)
    if list(actual) != list(expected) or any(actual[c] != expected[c] for c in expected):
        drift = {c: (str(actual.get(c)), str(expected.get(c))) for c in {*actual, *expected}
                 if actual.get(c) != expected.get(c)}
        raise PublishError(f"clean table {table!r} does not match contracts.CLEAN_SCHEMAS (actual, expected): {drift}")
    casts = {
        name: pl.Int64 if kind == "INT64" else pl.Float64
        for name, kind in bigquery_columns(table)
        if kind in ("INT64", "FLOAT64") and frame.schema[name] not in (pl.Int64, pl.Float64)
    }
    return frame.cast(casts) if casts else frame  # type: ignore[arg-type]


def csv_bytes(table: str, frame: pl.DataFrame) -> bytes:
    """CSV that BigQuery (and the emulator) load as the same values: header, ISO dates, plain
    decimals, empty field = NULL, quoted "" = empty string. Line breaks inside values are refused."""
    frame = _storage_frame(table, frame)
    strings = [c for c, t in frame.schema.items() if t == pl.String]
    if strings:
        breaks = frame.select(pl.any_horizontal(pl.col(strings).str.contains(r"[\r\n]").fill_null(False)).any())
        if breaks.item():
            raise PublishError(f"clean table {table!r} has line breaks inside text values; publish it --via parquet")
    return frame.write_csv(
        None, float_scientific=False, date_format="%Y-%m-%d", datetime_format="%Y-%m-%d %H:%M:%S%.6f",
        quote_style="necessary",
    ).encode("utf-8")


def parquet_bytes(table: str, frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    _storage_frame(table, frame).write_parquet(buffer, compression="snappy", statistics=True)
    return buffer.getvalue()


# --- loads ----------------------------------------------------------------------------------------
def ensure_dataset(client: Any, settings: CloudSettings) -> str:
    from google.cloud import bigquery

    dataset = bigquery.Dataset(f"{client.project}.{settings.dataset}")
    dataset.location = settings.location
    client.create_dataset(dataset, exists_ok=True)
    return f"{client.project}.{settings.dataset}"


def _load_config(table: str, source_format: str) -> Any:
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(
        schema=bigquery_schema(table),
        source_format=source_format,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    if source_format == bigquery.SourceFormat.CSV:
        config.skip_leading_rows = 1
    return config


def _finish(job: Any, table: str, expected_rows: int, timeout: float) -> int:
    job.result(timeout=timeout)
    loaded = int(job.output_rows or 0)
    if loaded != expected_rows:
        raise PublishError(f"{table}: BigQuery loaded {loaded} rows, expected {expected_rows}")
    return loaded


def load_csv(client: Any, destination: str, table: str, frame: pl.DataFrame,
             timeout: float = JOB_TIMEOUT_SECONDS) -> int:
    """Upload the table as CSV with its explicit schema (WRITE_TRUNCATE); return the rows loaded."""
    with tempfile.TemporaryFile() as handle:  # spooled to disk: large tables stay out of memory twice
        handle.write(csv_bytes(table, frame))
        handle.seek(0)
        job = client.load_table_from_file(
            handle, destination, job_config=_load_config(table, "CSV"), job_id_prefix=f"publish_{table}_",
            rewind=True,
        )
        return _finish(job, table, frame.height, timeout)


def stage_parquet(gcs: Any, settings: CloudSettings, table: str, frame: pl.DataFrame) -> str:
    """Write the table as Parquet to gs://bucket/prefix/<table>.parquet; return the URI."""
    uri = settings.gcs_uri(table)
    bucket_name, _, blob_name = uri.removeprefix("gs://").partition("/")
    blob = gcs.bucket(bucket_name).blob(blob_name)
    blob.upload_from_string(parquet_bytes(table, frame), content_type="application/vnd.apache.parquet")
    return uri


def load_parquet(client: Any, destination: str, table: str, uri: str, rows: int,
                 timeout: float = JOB_TIMEOUT_SECONDS) -> int:
    """Load a staged Parquet file from GCS with its explicit schema (WRITE_TRUNCATE)."""
    job = client.load_table_from_uri(
        uri, destination, job_config=_load_config(table, "PARQUET"), job_id_prefix=f"publish_{table}_"
    )
    return _finish(job, table, rows, timeout)


def publish_frames(frames: Mapping[str, pl.DataFrame], settings: CloudSettings, via: str = DEFAULT_VIA,
                   bq: Any = None, gcs: Any = None) -> dict[str, Any]:
    """Load in-memory clean tables into BigQuery; the core of `run_publish`."""
    if via not in VIAS:
        raise PublishError(f"--via must be one of {VIAS}, not {via!r}")
    bq = bq if bq is not None else bigquery_client(settings)
    if via == "parquet" and gcs is None:
        settings.gcs_uri("check")  # fail on a missing bucket before touching anything
        gcs = storage_client(settings)
    dataset = ensure_dataset(bq, settings)
    tables: dict[str, Any] = {}
    for table, frame in frames.items():
        destination = f"{dataset}.{table}"
        if via == "csv":
            rows = load_csv(bq, destination, table, frame)
            tables[table] = {"table": destination, "rows": rows, "source": "csv upload"}
        else:
            uri = stage_parquet(gcs, settings, table, frame)
            rows = load_parquet(bq, destination, table, uri, frame.height)
            tables[table] = {"table": destination, "rows": rows, "source": uri}
    return {
        "via": via,
        "project": bq.project,
        "dataset": settings.dataset,
        "location": settings.location,
        "emulator": settings.emulated,
        "tables": tables,
    }


def read_clean(paths: Paths, table: str) -> pl.DataFrame:
    path = paths.clean / f"{table}.parquet"
    if not path.exists():
        raise PublishError(f"{path}: not found; run the clean stage first")
    return pl.read_parquet(path)


def run_publish(paths: Paths, params: Params | None = None, via: str | None = None,
                tables: Sequence[str] | None = None, settings: CloudSettings | None = None) -> dict[str, Any]:
    """The stage: load data/clean/<table>.parquet for every clean table into BigQuery.

    `via` defaults to $PUBLISH_VIA, else "parquet". `params` is accepted for the CLI's stage
    signature; every cloud setting comes from the environment (no credentials in the repo).
    """
    del params
    via = via or os.environ.get("PUBLISH_VIA", "").strip() or DEFAULT_VIA
    names = list(tables) if tables else list(CLEAN_SCHEMAS)
    for name in names:
        bigquery_columns(name)  # unknown names fail before any I/O
    frames = {name: read_clean(paths, name) for name in names}
    return publish_frames(frames, settings or CloudSettings.from_env(), via=via)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.cloud.publish",
        description="Load data/clean/*.parquet into BigQuery (explicit schemas, WRITE_TRUNCATE).",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: current folder)")
    parser.add_argument("--via", choices=VIAS, default=None,
                        help="parquet: stage on gs://$GCS_BUCKET then load (production, default); "
                             "csv: upload CSV (no bucket; what the emulator accepts)")
    parser.add_argument("--table", action="append", dest="tables", choices=sorted(CLEAN_SCHEMAS),
                        help="publish only this table (repeatable; default: all clean tables)")
    args = parser.parse_args(argv)
    try:
        summary = run_publish(Paths(args.root.resolve()), via=args.via, tables=args.tables)
    except (PublishError, CloudConfigError) as exc:
        print(f"error: publish: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
