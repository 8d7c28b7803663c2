"""The cloud path: the same pipeline on BigQuery (warehouse) and Cloud Storage (data).

- `pipelines.cloud.settings`: settings from environment variables and the Google clients
  (Application Default Credentials; anonymous credentials only against a local emulator).
- `pipelines.cloud.publish`: load the clean tables into BigQuery (Parquet via GCS, or CSV);
  `python -m pipelines.cloud.publish --help`.

See docs/cloud.md for the BigQuery dbt target, the gs:// DVC remote and the emulator gaps.
Submodules are not imported here, so `python -m pipelines.cloud.publish` runs cleanly.
"""
