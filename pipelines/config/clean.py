"""params.yaml section `clean`: validity bounds, encoding and the quarantine ceiling."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from pipelines.config.base import Strict


class ExtractPeriod(Strict):
    """First and last day covered by the extract: no admission before, no date after."""

    start_date: date = date(2021, 1, 1)
    end_date: date = date(2024, 12, 31)

    @model_validator(mode="after")
    def _ordered(self) -> ExtractPeriod:
        if self.end_date < self.start_date:
            raise ValueError(f"extract end {self.end_date} is before its start {self.start_date}")
        return self


# The extract's bounds are set once, as the warehouse's dbt vars; clean reads the same keys.
EXTRACT_KEYS: dict[str, str] = {"start_date": "data_start_date", "end_date": "data_end_date"}


class CleanParams(Strict):
    min_age: int = 0
    max_age: int = 115
    min_birth_year: int = 1900
    encoding: Literal["auto", "utf-8", "cp1252", "latin-1"] = "auto"  # auto: UTF-8, else CP1252, else Latin-1
    max_quarantine_share: float = Field(0.05, ge=0, le=1)  # above it for a table, clean stops (exit 2)
    # A table whose files (driving + linked) exceed this many MiB is cleaned in hash partitions of
    # about this size (bounded memory at region scale; README "The whole region on one machine").
    partition_mb: int = Field(64, ge=1)
    # Filled by Params from warehouse.data_start_date / data_end_date (never set in params.yaml).
    extract: ExtractPeriod = ExtractPeriod()
