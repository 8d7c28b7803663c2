"""Typed params (params.yaml is the one source of truth) and the project's paths."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.errors import PipelineInputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DirtRates(_Strict):
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


class EffectParams(_Strict):
    """Log-odds effects of the simulator's readmission model (the planted truth)."""

    intercept: float = -3.0
    age_per_decade: float = 0.42  # centred on 65 years
    log_cost: float = 0.85  # per log-euro, centred on 4,000 euros
    poverty_per_point: float = 0.016  # per point of department poverty rate above 15.5%
    prior_stay: float = 0.12  # per unplanned episode in the 365 days before, up to 5
    emergency: float = 0.20
    charlson_point: float = 0.08  # per Charlson point, up to 6
    male: float = 0.10


class DriftParams(_Strict):
    """Shifts a region really sees, applied to admissions from `start_date` (the monitored window)."""

    enabled: bool = False  # false: the no-drift setting
    start_date: date = date(2024, 4, 1)
    older_population: float = Field(0.35, ge=0, lt=1)  # share of under-65 episodes that no longer happen
    cost_inflation: float = Field(0.15, ge=0, le=2)  # tariffs rise; the risk does not
    new_hospital_share: float = Field(0.4, ge=0, le=1)  # share of 93 residents' stays going to a new clinic
    coding_intensity: float = Field(0.4, ge=0, le=1)  # chance a stay gains an extra coded comorbidity


class GenerateParams(_Strict):
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


class ExtractPeriod(_Strict):
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


class CleanParams(_Strict):
    min_age: int = 0
    max_age: int = 115
    min_birth_year: int = 1900
    encoding: Literal["auto", "utf-8", "cp1252", "latin-1"] = "auto"  # auto: UTF-8, else CP1252, else Latin-1
    max_quarantine_share: float = Field(0.05, ge=0, le=1)  # above it for a table, clean stops (exit 2)
    # Filled by Params from warehouse.data_start_date / data_end_date (never set in params.yaml).
    extract: ExtractPeriod = ExtractPeriod()


class Params(BaseModel):
    """All params. Sections of later stages are kept as plain mappings until typed."""

    model_config = ConfigDict(extra="allow", frozen=True)

    seed: int = 20240601
    generate: GenerateParams = GenerateParams()
    clean: CleanParams = CleanParams()

    @model_validator(mode="before")
    @classmethod
    def _extract_from_warehouse(cls, data: Any) -> Any:
        """clean.extract = the warehouse's data_start_date / data_end_date (one source of truth)."""
        if not isinstance(data, dict) or not isinstance(data.get("clean", {}), dict):
            return data
        clean = dict(data.get("clean") or {})
        bounds = _extract_bounds(data)
        try:
            ExtractPeriod.model_validate(bounds)
        except ValidationError:
            return data  # reported by load_params and by the warehouse section's own validation
        if "extract" not in clean:
            clean["extract"] = bounds
        elif bounds and ExtractPeriod.model_validate(clean["extract"]) != ExtractPeriod.model_validate(bounds):
            # A dumped Params round-trips; a second, different period would be a second source of truth.
            raise ValueError("clean.extract must equal warehouse.data_start_date/data_end_date (set those only)")
        return {**data, "clean": clean}


def _extract_bounds(data: dict[str, Any]) -> dict[str, Any]:
    """The extract period as written in the warehouse section (keys of ExtractPeriod)."""
    warehouse = data.get("warehouse") or {}
    if not isinstance(warehouse, dict):
        return {}
    return {k: warehouse[w] for k, w in EXTRACT_KEYS.items() if w in warehouse}


T = TypeVar("T", bound=BaseModel)


def section(params: Params, name: str, model: type[T]) -> T:
    """Validate one extra section of params.yaml (e.g. 'train') against its typed model."""
    extra = params.model_extra or {}
    try:
        return model.model_validate(extra.get(name, {}))
    except ValidationError as exc:
        raise ParamsError(f"params.yaml section '{name}': {exc}") from exc


class ParamsError(PipelineInputError, ValueError):
    """params.yaml is missing, unreadable or holds a value of the wrong type."""


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: params file not found") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    try:
        ExtractPeriod.model_validate(_extract_bounds(raw))
    except ValidationError as exc:
        raise ParamsError(f"{path}: warehouse.data_start_date/data_end_date (the extract period): {exc}") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class Paths:
    """Every location the stages read or write, relative to the project root."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def truth(self) -> Path:
        return self.data / "truth"

    @property
    def clean(self) -> Path:
        return self.data / "clean"

    @property
    def quarantine(self) -> Path:
        return self.data / "quarantine"

    @property
    def features(self) -> Path:
        return self.data / "features"

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def dbt(self) -> Path:
        return self.root / "dbt"
