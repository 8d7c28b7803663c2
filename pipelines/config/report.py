"""params.yaml section `report`: the dashboard's titles, small-cell rule and chart sizes."""

from __future__ import annotations

from pydantic import Field

from pipelines.config.base import Strict


class ReportParams(Strict):
    """params.yaml section `report`."""

    title: str = "Regional Patient Flow Command Center"
    subtitle: str = "30-day hospital readmissions in Île-de-France · simulated SNDS data"
    min_cell_patients: int = Field(10, ge=1)  # cells with fewer patients are suppressed everywhere
    top_n_diagnoses: int = Field(10, ge=1)  # ICD-10 categories in the "top diagnoses" charts
    top_features: int = Field(15, ge=1)  # features in the importance chart
    cost_ntiles: int = Field(10, ge=2)  # "costliest stays" = the top 1/cost_ntiles of index stays by cost
    trend_compare_months: int = Field(12, ge=1)  # the trend finding: last N published months vs the N before
