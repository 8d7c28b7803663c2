"""params.yaml section `serving`: the REST server's workers and request limits."""

from __future__ import annotations

from pydantic import Field

from pipelines.config.base import Strict


class ServingParams(Strict):
    """params.yaml section `serving`."""

    workers: int = Field(2, ge=1, le=32)  # uvicorn worker processes (one per core here)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)  # larger bodies get 413 unread
    max_json_depth: int = Field(8, ge=4, le=64)  # dataframe_split is 4 deep
    request_timeout_s: float = Field(10.0, gt=0, le=300)  # headers, then body, must arrive within this
