"""params.yaml section `generate`: the simulator's size, dirt and planted effects."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from pipelines.config.base import Strict


class DirtRates(Strict):
    """Share of rows hit by each corruption kind (see contracts.CORRUPTION_KINDS)."""

    department_format: float = Field(0.04, ge=0, le=1)
    icd_format: float = Field(0.04, ge=0, le=1)
    decimal_comma: float = Field(0.05, ge=0, le=1)
    discharge_before_admission: float = Field(0.002, ge=0, le=1)
    missing_cost: float = Field(0.002, ge=0, le=1)
    negative_cost: float = Field(0.001, ge=0, le=1)
    unknown_finess: float = Field(0.001, ge=0, le=1)
    impossible_age: float = Field(0.001, ge=0, le=1)
    impossible_birth_year: float = Field(0.002, ge=0, le=1)
    malformed_line: float = Field(0.0005, ge=0, le=1)
    duplicate_row: float = Field(0.003, ge=0, le=1)
    pmsi_rejected_stay: float = Field(0.002, ge=0, le=1)  # extra RSAs the PMSI filters drop (not corruptions)


class EffectParams(Strict):
    """Log-odds effects of the simulator's readmission model (the planted truth)."""

    intercept: float = -3.0
    age_per_decade: float = 0.42  # centred on 65 years
    log_cost: float = 0.85  # per log-euro, centred on 4,000 euros
    poverty_per_point: float = 0.016  # per point of department poverty rate above 15.5%
    prior_stay: float = 0.12  # per unplanned episode in the 365 days before, up to 5
    emergency: float = 0.20
    charlson_point: float = 0.08  # per Charlson point, up to 6
    male: float = 0.10


class DriftParams(Strict):
    """Shifts a region really sees, applied to admissions from `start_date` (the monitored window)."""

    enabled: bool = False  # false: the no-drift setting
    start_date: date = date(2024, 4, 1)
    older_population: float = Field(0.35, ge=0, lt=1)  # share of under-65 episodes that no longer happen
    cost_inflation: float = Field(0.15, ge=0, le=2)  # tariffs rise; the risk does not
    new_hospital_share: float = Field(0.4, ge=0, le=1)  # share of 93 residents' stays going to a new clinic
    coding_intensity: float = Field(0.4, ge=0, le=1)  # chance a stay gains an extra coded comorbidity


class GenerateParams(Strict):
    scale: float = Field(1.0, gt=0)
    patients: int = Field(30000, gt=0)
    hospitals: int = Field(64, ge=8)
    start_date: date = date(2021, 1, 1)
    end_date: date = date(2024, 12, 31)
    chunk_patients: int = Field(20000, gt=0)
    dirt: DirtRates = DirtRates()
    effects: EffectParams = EffectParams()
    drift: DriftParams = DriftParams()

    @property
    def n_patients(self) -> int:
        return max(1, round(self.patients * self.scale))
