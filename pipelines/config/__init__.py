"""Typed params: params.yaml is the one source of truth, and every key of it is declared here.

One model per section, one module per section (generate, clean, warehouse, model = train /
evaluate / promote, monitor, report, serving), all on `Strict` (unknown keys are an error): a
misspelled section or key stops `load_params` with its dotted name and the nearest known one.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from pipelines.config.base import Strict
from pipelines.config.clean import EXTRACT_KEYS, CleanParams, ExtractPeriod
from pipelines.config.generate import (
    DirtRates,
    DriftParams,
    EffectParams,
    GenerateParams,
    LatentParams,
    ReturnParams,
)
from pipelines.config.model import EvaluateParams, PromoteParams, SearchSpace, TrainParams
from pipelines.config.monitor import MonitorParams
from pipelines.config.paths import Paths
from pipelines.config.report import ReportParams
from pipelines.config.serving import ServingParams
from pipelines.config.warehouse import DuckDBSettings, WarehouseParams
from pipelines.errors import PipelineInputError

__all__ = [
    "EXTRACT_KEYS", "CleanParams", "DirtRates", "DriftParams", "DuckDBSettings", "EffectParams",
    "EvaluateParams", "ExtractPeriod", "GenerateParams", "LatentParams", "MonitorParams", "Params",
    "ParamsError", "Paths", "PromoteParams", "ReportParams", "ReturnParams", "SearchSpace",
    "ServingParams", "Strict", "TrainParams",
    "WarehouseParams", "describe_errors", "load_params",
]


class Params(Strict):
    """The whole params.yaml. A section left out takes its defaults; an unknown one is an error."""

    seed: int = 20240601
    generate: GenerateParams = GenerateParams()
    clean: CleanParams = CleanParams()
    warehouse: WarehouseParams = WarehouseParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    monitor: MonitorParams = MonitorParams()
    report: ReportParams = ReportParams()
    promote: PromoteParams = PromoteParams()
    serving: ServingParams = ServingParams()

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


class ParamsError(PipelineInputError, ValueError):
    """params.yaml is missing, unreadable, holds an unknown key or a value of the wrong type."""


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys declared at `loc`'s parent (for the did-you-mean of an unknown key)."""
    current: Any = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def describe_errors(exc: ValidationError, model: type[BaseModel] = Params) -> str:
    """One line per problem: the dotted key, what is wrong and, for an unknown key, the nearest one."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc), n=1, cutoff=0.6)
            hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), near[0]])}'?)" if near else ""
            lines.append(f"{key}: unknown key{hint}")
        else:
            lines.append(f"{key}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(lines)


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; any problem is a ParamsError naming the file and the key."""
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: params file not found") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    try:
        ExtractPeriod.model_validate(_extract_bounds(raw))
    except ValidationError as exc:
        raise ParamsError(f"{path}: warehouse.data_start_date/data_end_date (the extract period): "
                          f"{describe_errors(exc, ExtractPeriod)}") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: {describe_errors(exc)}") from exc
