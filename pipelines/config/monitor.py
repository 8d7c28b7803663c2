"""params.yaml section `monitor`: the drift windows and tests, and the fairness groups."""

from __future__ import annotations

from datetime import date
from itertools import pairwise
from typing import Literal

from pydantic import Field, model_validator

from pipelines import contracts
from pipelines.config.base import Strict

FEATURES: tuple[str, ...] = (*contracts.NUMERIC_FEATURES, *contracts.CATEGORICAL_FEATURES)
AGE_BAND = "age_band"  # a derived grouping: `age` cut at `age_band_edges`


class MonitorParams(Strict):
    # Windows on discharge_date; starts inclusive, ends exclusive. None: from the trained model's
    # split (models/model_meta.json, else the `train` section): reference = the training window
    # (discharge_date < train_end), current = the test/production window (>= valid_end, open end).
    reference_start: date | None = None
    reference_end: date | None = None
    current_start: date | None = None
    current_end: date | None = None
    # Reference of the prediction-drift check: "valid" compares the current scores with the
    # out-of-sample scores of the validation window; "train" with the (in-sample, so sharper)
    # scores of the reference window.
    prediction_reference: Literal["valid", "train"] = "valid"
    # Columns checked for data drift; None = every feature of contracts.FEATURE_SCHEMA.
    columns: tuple[str, ...] | None = None
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drift when >= this share of columns drift
    # Evidently's per-column test; None = its automatic choice (by column type, size, cardinality).
    num_method: str | None = None
    cat_method: str | None = None
    num_threshold: float | None = Field(None, gt=0)
    cat_threshold: float | None = Field(None, gt=0)
    # Fairness: groups of the monitored window; cells under min_cell_patients are suppressed.
    fairness_groups: tuple[str, ...] = ("department", "sex", AGE_BAND)
    age_band_edges: tuple[int, ...] = (18, 45, 65, 80)
    min_cell_patients: int = Field(10, ge=1)
    four_fifths_threshold: float = Field(0.8, gt=0, le=1)  # heuristic screening rule, not a legal test
    # Reliability (calibration) curves per group of these groupings, in quantile bins of the probability.
    reliability_groups: tuple[str, ...] = ("department",)
    reliability_bins: int = Field(5, ge=2, le=20)
    # Bootstrap replicates of each parity ratio's 95% interval (seeded by the top-level seed); 0: none.
    bootstrap_replicates: int = Field(1000, ge=0, le=100_000)

    @model_validator(mode="after")
    def _check(self) -> MonitorParams:
        if self.columns is not None:
            unknown = sorted(set(self.columns) - set(FEATURES))
            if unknown or not self.columns:
                raise ValueError(f"columns: not features of the contract: {unknown}" if unknown
                                 else "columns: at least one column (or null for all features)")
            if len(set(self.columns)) != len(self.columns):
                raise ValueError("columns: duplicates")
        allowed = {*FEATURES, AGE_BAND}
        if not set(self.reliability_groups) <= set(self.fairness_groups):
            raise ValueError(f"reliability_groups: {sorted(set(self.reliability_groups) - set(self.fairness_groups))} "
                             "are not in fairness_groups")
        bad_groups = sorted(set(self.fairness_groups) - allowed)
        if bad_groups:
            raise ValueError(f"fairness_groups: unknown {bad_groups} (features or '{AGE_BAND}')")
        edges = self.age_band_edges
        if not edges or any(b <= a for a, b in pairwise(edges)):
            raise ValueError(f"age_band_edges: expected strictly increasing ages, got {list(edges)}")
        for name, start, end in (("reference", self.reference_start, self.reference_end),
                                 ("current", self.current_start, self.current_end)):
            if start is not None and end is not None and not start < end:
                raise ValueError(f"{name} window: start ({start}) must be before end ({end})")
        return self

    @property
    def drift_columns(self) -> tuple[str, ...]:
        return self.columns if self.columns is not None else FEATURES
