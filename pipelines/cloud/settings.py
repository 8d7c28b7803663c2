"""Cloud settings from environment variables, and the Google clients built from them.

Nothing here holds a credential. On Google Cloud the clients authenticate with Application
Default Credentials (``gcloud auth application-default login`` on a workstation, the attached
service account on a VM / Cloud Run / CI with workload identity, or
``GOOGLE_APPLICATION_CREDENTIALS`` pointing at a key file kept outside the repository).
Anonymous credentials are used only when an emulator endpoint is set.

Each BigQuery setting is read from ``BQ_<NAME>`` and, when that is unset, from the variable the
dbt project reads (``SNDS_BQ_PROJECT``, ``SNDS_BQ_LOCATION``, ``SNDS_BQ_API_ENDPOINT``, and for the
dataset ``SNDS_BQ_CLEAN_DATASET``: the dataset of dbt's `clean` source), so one set of exported
variables drives both `publish` and `dbt --target bigquery`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.errors import PipelineInputError

DEFAULT_DATASET = "clean"  # the dataset dbt's `clean` source reads on BigQuery (SNDS_BQ_CLEAN_DATASET)
DEFAULT_LOCATION = "EU"
DEFAULT_GCS_PREFIX = "clean"
EMULATOR_PROJECT = "local-project"


class CloudConfigError(PipelineInputError, ValueError):
    """A cloud setting is missing or malformed (the message names the variable to set)."""


def _endpoint(value: str | None) -> str | None:
    """An emulator/API endpoint as a URL: 'host:port' gets an http:// scheme."""
    if not value:
        return None
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = f"http://{value}"
    return value


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class CloudSettings:
    """Where `publish` loads the clean tables: a BigQuery dataset, and a GCS bucket for Parquet."""

    project: str | None
    dataset: str
    location: str
    bucket: str | None
    prefix: str
    bigquery_endpoint: str | None  # None: the real BigQuery API
    storage_endpoint: str | None  # None: the real Cloud Storage API

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CloudSettings:
        env = os.environ if env is None else env
        return cls(
            project=_first(env, "BQ_PROJECT", "SNDS_BQ_PROJECT", "GOOGLE_CLOUD_PROJECT"),
            dataset=_first(env, "BQ_DATASET", "SNDS_BQ_CLEAN_DATASET") or DEFAULT_DATASET,
            location=_first(env, "BQ_LOCATION", "SNDS_BQ_LOCATION") or DEFAULT_LOCATION,
            bucket=_first(env, "GCS_BUCKET"),
            prefix=(_first(env, "GCS_PREFIX") or DEFAULT_GCS_PREFIX).strip("/"),
            bigquery_endpoint=_endpoint(
                _first(env, "BQ_API_ENDPOINT", "SNDS_BQ_API_ENDPOINT", "BIGQUERY_EMULATOR_HOST")
            ),
            storage_endpoint=_endpoint(_first(env, "GCS_API_ENDPOINT", "STORAGE_EMULATOR_HOST")),
        )

    @property
    def emulated(self) -> bool:
        return self.bigquery_endpoint is not None

    def gcs_uri(self, table: str) -> str:
        if not self.bucket:
            raise CloudConfigError("set GCS_BUCKET (the bucket that stages Parquet files for BigQuery loads)")
        prefix = f"{self.prefix}/" if self.prefix else ""
        return f"gs://{self.bucket}/{prefix}{table}.parquet"


def _credentials(endpoint: str | None) -> tuple[Any, str | None]:
    """(credentials, project found by ADC). Anonymous only for an emulator endpoint."""
    if endpoint is not None:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError as exc:
        raise CloudConfigError(
            "no Google credentials found: run `gcloud auth application-default login`, run on a "
            "service account, or set GOOGLE_APPLICATION_CREDENTIALS to a key file outside the repo "
            f"({exc})"
        ) from exc
    return credentials, project


def bigquery_client(settings: CloudSettings) -> Any:
    """A google-cloud-bigquery Client for the settings' project, location and endpoint."""
    from google.cloud import bigquery

    credentials, adc_project = _credentials(settings.bigquery_endpoint)
    project = settings.project or adc_project
    if not project:
        raise CloudConfigError("set BQ_PROJECT (or SNDS_BQ_PROJECT): the Google Cloud project of the warehouse")
    options = {"api_endpoint": settings.bigquery_endpoint} if settings.bigquery_endpoint else None
    return bigquery.Client(
        project=project, credentials=credentials, location=settings.location, client_options=options
    )


def storage_client(settings: CloudSettings) -> Any:
    """A google-cloud-storage Client for the settings' endpoint (emulator or the real API)."""
    from google.cloud.storage import Client

    credentials, adc_project = _credentials(settings.storage_endpoint)
    options = {"api_endpoint": settings.storage_endpoint} if settings.storage_endpoint else None
    project = settings.project or adc_project
    if project is None and settings.storage_endpoint:
        project = EMULATOR_PROJECT  # an emulator ignores it; the client only needs a name
    return Client(project=project, credentials=credentials, client_options=options)
