"""Export the ML feature mart from BigQuery to data/features/ml_readmission_features.parquet.

The cloud counterpart of the `features` stage: after `dbt build --target bigquery`, the mart
`<project>.<marts dataset>.ml_readmission_features` is read back with google-cloud-bigquery
(REST, no BigQuery Storage API needed) and written with exactly `contracts.FEATURE_SCHEMA`,
so `train` and `evaluate` run unchanged. Run it with ``python -m pipelines.cloud.features``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipelines import atomic
from pipelines.cloud.settings import CloudConfigError, CloudSettings, bigquery_client
from pipelines.config import Paths
from pipelines.contracts import FEATURE_KEY, FEATURE_SCHEMA
from pipelines.errors import PipelineInputError

FEATURE_MART = "ml_readmission_features"
FEATURES_FILE = f"{FEATURE_MART}.parquet"
DEFAULT_MARTS_DATASET = "marts"  # dbt's custom schema of models/marts, used as is as a dataset


class FeatureExportError(PipelineInputError, RuntimeError):
    """The mart on BigQuery does not have the feature contract's columns."""


def marts_dataset(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    return (env.get("BQ_MARTS_DATASET") or DEFAULT_MARTS_DATASET).strip()


def to_feature_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The mart's rows with exactly contracts.FEATURE_SCHEMA (names, order, dtypes), sorted by key."""
    missing = [c for c in FEATURE_SCHEMA if c not in frame.columns]
    if missing:
        raise FeatureExportError(f"{FEATURE_MART} lacks the contract's columns {missing}")
    return frame.select([pl.col(c).cast(t, strict=True) for c, t in FEATURE_SCHEMA.items()]).sort(FEATURE_KEY)


def read_feature_mart(client: Any, dataset: str) -> pl.DataFrame:
    table = f"`{client.project}.{dataset}.{FEATURE_MART}`"
    columns = ", ".join(FEATURE_SCHEMA)
    arrow = client.query(f"select {columns} from {table}").result().to_arrow(create_bqstorage_client=False)
    frame = pl.from_arrow(arrow)
    assert isinstance(frame, pl.DataFrame)
    return to_feature_frame(frame)


def export_features(paths: Paths, settings: CloudSettings | None = None, dataset: str | None = None,
                    client: Any = None) -> dict[str, Any]:
    """Read the mart from BigQuery and write data/features/ml_readmission_features.parquet."""
    settings = settings or CloudSettings.from_env()
    dataset = dataset or marts_dataset()
    own_client = client is None
    client = client if client is not None else bigquery_client(settings)
    try:
        frame = read_feature_mart(client, dataset)
        project = client.project
    finally:
        if own_client:
            client.close()
    out = paths.features / FEATURES_FILE
    with atomic.atomic_file(out) as tmp:
        frame.write_parquet(tmp)
    return {"source": f"{project}.{dataset}.{FEATURE_MART}", "rows": frame.height, "path": str(out)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.cloud.features",
        description="Export the BigQuery feature mart to data/features/ml_readmission_features.parquet.",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: current folder)")
    parser.add_argument("--dataset", default=None, help="dataset of the marts (default: $BQ_MARTS_DATASET or marts)")
    args = parser.parse_args(argv)
    try:
        summary = export_features(Paths(args.root.resolve()), dataset=args.dataset)
    except (FeatureExportError, CloudConfigError) as exc:
        print(f"error: features: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
