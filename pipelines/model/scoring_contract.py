"""What a row must look like to be scored: one contract for REST serving and batch `score`.

The bounds come from the same places the rest of the chain uses: the clean stage's age bound
(params `clean.max_age`), the warehouse's index-stay rules (params `warehouse.minor_age`, the
extract's dates), the feature contract (`contracts.FEATURE_SCHEMA`: Int32 columns), the dbt
tests of the feature mart (sex 1/2/9, flags 0/1, LACE 0-19, the accepted code sets), the
nomenclatures (IdF departments, Charlson weights) and, for categorical columns, the categories
the served model was trained on (its one-hot encoder), so an unseen category is refused
instead of silently scored as "none of them".

Violations raise ScoringContractError naming the column, the (0-based) row and what is allowed.
Messages never contain the offending value: request rows are health data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipelines import contracts
from pipelines.config import Params
from pipelines.errors import PipelineInputError

if TYPE_CHECKING:  # the contract itself never loads the model code (nor MLflow)
    from pipelines.model.pyfunc_model import ModelBundle

INT32_MAX = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the forest compares float32 inputs: larger is inf
# Highest Charlson score of dbt/seeds/ref_charlson_categories.csv (sum of the weights of the
# categories no other category supersedes; a test recomputes it from the seed).
CHARLSON_MAX = 29
LACE_MAX = 19  # L 7 + A 3 + C 5 + E 4 (dbt test of ml_readmission_features.lace_score)
PRIOR_6M_DAYS = 182  # int_patient_history windows: at most one episode admitted per day
PRIOR_12M_DAYS = 365
MAX_STRING_LENGTH = 64  # every string in a request (ids, codes); far above any real code
# Accepted code sets of the feature mart (dbt tests in dbt/models/marts/_marts.yml).
DIAGNOSIS_GROUPS = ("COPD", "HEART_FAILURE", "DIABETES", "CKD", "CANCER", "STROKE", "PNEUMONIA",
                    "HIP_FRACTURE", "OTHER")
DISCHARGE_DESTINATIONS = ("home", "transfer_mco", "transfer_ssr", "other")
CONTRACT_CODES: dict[str, tuple[str, ...]] = {
    "department": contracts.IDF_DEPARTMENTS,
    "diagnosis_group": DIAGNOSIS_GROUPS,
    "hospital_category": contracts.HOSPITAL_CATEGORY_VALUES,
    "discharge_destination": DISCHARGE_DESTINATIONS,
}
NULLABLE = ("days_since_last_discharge",)  # null when the patient has no earlier stay
PASSTHROUGH = (contracts.FEATURE_KEY, contracts.FEATURE_SPLIT_DATE)  # may come along, not model inputs


class ScoringContractError(PipelineInputError, ValueError):
    """A value the model must not score. `column` and `row` say where; the text never shows the value."""

    def __init__(self, column: str | None, row: int | None, problem: str, allowed: str = "",
                 count: int = 1) -> None:
        where = f"column '{column}'" if column is not None else "request"
        if row is not None:
            where += f", row {row}" if count <= 1 else f", {count} rows (first: row {row})"
        super().__init__(f"{where}: {problem}" + (f"; allowed: {allowed}" if allowed else ""))
        self.column, self.row, self.count = column, row, count


@dataclass(frozen=True)
class NumericRule:
    """Bounds of a numeric feature (inclusive); `codes` when only a few values make sense."""

    name: str
    low: float
    high: float
    integer: bool = True
    nullable: bool = False
    codes: tuple[int, ...] = ()

    def allowed(self) -> str:
        if self.codes:
            text = "one of " + ", ".join(str(c) for c in self.codes)
        elif self.integer:
            text = f"whole numbers in [{self.low:g}, {self.high:g}]"
        elif self.high >= FLOAT32_MAX:
            text = f"finite numbers >= {self.low:g}"
        else:
            text = f"finite numbers in [{self.low:g}, {self.high:g}]"
        return text + (", or null" if self.nullable else "")


@dataclass(frozen=True)
class CategoricalRule:
    name: str
    values: tuple[str, ...]

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class ScoringContract:
    numeric: tuple[NumericRule, ...]
    categorical: tuple[CategoricalRule, ...]
    max_string_length: int = MAX_STRING_LENGTH

    @property
    def features(self) -> list[str]:
        return [r.name for r in self.numeric] + [r.name for r in self.categorical]

    def rule(self, name: str) -> NumericRule | CategoricalRule:
        rules: list[NumericRule | CategoricalRule] = [*self.numeric, *self.categorical]
        for rule in rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def trained_categories(bundle: ModelBundle) -> dict[str, tuple[str, ...]]:
    """The categories the fitted one-hot encoder knows, per categorical column ({} if not found)."""
    try:
        prep = bundle.pipeline.named_steps["prep"]
        for _, transformer, columns in prep.transformers_:
            if list(columns) == list(bundle.categorical) and hasattr(transformer, "categories_"):
                return {col: tuple(str(v) for v in cats if isinstance(v, str))
                        for col, cats in zip(columns, transformer.categories_, strict=True)}
    except (AttributeError, KeyError, TypeError):
        pass
    return {}


def scoring_contract(params: Params, trained: Mapping[str, Sequence[str]] | None = None) -> ScoringContract:
    """The contract for the served model: params bounds, and its trained categories when given."""
    wb = params.warehouse
    span_days = (wb.data_end_date - wb.data_start_date).days
    low_age = max(params.clean.min_age, wb.minor_age)  # minors are never index stays
    numeric = (
        NumericRule("age", low_age, params.clean.max_age),
        # 1 male, 2 female, 9 unknown (clean maps SNDS codes 0/7/8/9 to 9; dbt tests the same set)
        NumericRule("sex", 1, contracts.SEX_UNKNOWN, codes=contracts.SEX_CODES),
        NumericRule("deprivation_rate", 0.0, 100.0, integer=False),
        NumericRule("length_of_stay", 0, span_days),
        NumericRule("emergency_admission", 0, 1, codes=(0, 1)),
        NumericRule("charlson_score", 0, CHARLSON_MAX),
        NumericRule("prior_stays_6m", 0, PRIOR_6M_DAYS),
        NumericRule("prior_stays_12m", 0, PRIOR_12M_DAYS),
        NumericRule("prior_emergency_6m", 0, PRIOR_6M_DAYS),
        NumericRule("prior_emergency_12m", 0, PRIOR_12M_DAYS),
        NumericRule("days_since_last_discharge", 0, span_days, nullable=True),
        NumericRule("stay_cost", 0.0, FLOAT32_MAX, integer=False),
        NumericRule("prior_atc_classes_90d", 0, INT32_MAX),
        NumericRule("lace_score", 0, LACE_MAX),
    )
    if [r.name for r in numeric] != list(contracts.NUMERIC_FEATURES):
        raise RuntimeError("scoring contract out of step with contracts.NUMERIC_FEATURES")
    categorical = []
    for name in contracts.CATEGORICAL_FEATURES:
        codes = CONTRACT_CODES[name]
        if trained and name in trained:  # the model's categories, within the contract's code set
            codes = tuple(v for v in trained[name] if v in codes)
        categorical.append(CategoricalRule(name, codes))
    return ScoringContract(numeric, tuple(categorical))


# ---- checks on arrays (shared by REST and batch) -----------------------------------------------

def _first_bad(column: str, mask: np.ndarray, problem: str, allowed: str) -> None:
    if mask.any():
        rows = np.flatnonzero(mask)
        raise ScoringContractError(column, int(rows[0]), problem, allowed, count=int(rows.size))


def check_numeric(rule: NumericRule, values: np.ndarray) -> None:
    """`values`: float64, NaN for null. Null, infinite, fractional, out-of-range values are refused."""
    missing = np.isnan(values)
    if not rule.nullable:
        _first_bad(rule.name, missing, "null or NaN", rule.allowed())
    present = ~missing
    _first_bad(rule.name, present & np.isinf(values), "not a finite number", rule.allowed())
    with np.errstate(invalid="ignore"):
        if rule.integer:
            _first_bad(rule.name, present & (np.floor(values) != values), "not a whole number", rule.allowed())
        if rule.codes:
            _first_bad(rule.name, present & ~np.isin(values, np.asarray(rule.codes, dtype=np.float64)),
                       "not an allowed code", rule.allowed())
        outside = present & ((values < rule.low) | (values > rule.high))
    _first_bad(rule.name, outside, "out of range", rule.allowed())


def check_categorical(rule: CategoricalRule, values: np.ndarray, max_length: int) -> None:
    """`values`: object array of str (types already checked). Too long or unknown codes are refused."""
    too_long = np.fromiter((len(v) > max_length for v in values), dtype=bool, count=len(values))
    _first_bad(rule.name, too_long, f"longer than {max_length} characters", rule.allowed())
    _first_bad(rule.name, ~np.isin(values, np.asarray(rule.values, dtype=object)), "unknown value", rule.allowed())


# ---- JSON rows (REST) ---------------------------------------------------------------------------

def _json_number(column: str, row: int, value: Any, integer: bool) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a whole number" if integer else "a number"
        raise ScoringContractError(column, row, f"expected {kind}, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond float range: out of range whatever the bounds
        return math.inf


def numeric_column(rule: NumericRule, values: Sequence[Any]) -> np.ndarray:
    """JSON values of one numeric column -> float64 (NaN for null), checked against the rule."""
    array = np.fromiter((_json_number(rule.name, i, v, rule.integer) for i, v in enumerate(values)),
                        dtype=np.float64, count=len(values))
    check_numeric(rule, array)
    return array


def string_column(name: str, values: Sequence[Any], max_length: int, nullable: bool = False) -> np.ndarray:
    """JSON values of one text column -> object array; types and length checked."""
    for row, value in enumerate(values):
        if value is None and nullable:
            continue
        if not isinstance(value, str):
            got = "null" if value is None else type(value).__name__
            raise ScoringContractError(name, row, f"expected a string, got {got}")
        if len(value) > max_length:
            raise ScoringContractError(name, row, f"longer than {max_length} characters")
    return np.asarray(values, dtype=object)


def _check_date_string(name: str, values: Sequence[Any]) -> None:
    for row, value in enumerate(values):
        if value is None:
            continue
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ScoringContractError(name, row, "not an ISO date", "YYYY-MM-DD") from None


def check_columns(contract: ScoringContract, columns: Mapping[str, Sequence[Any]]
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check decoded JSON columns (names already checked against the contract); return the
    numeric arrays and the categorical arrays, in the contract's feature order."""
    for name in PASSTHROUGH:
        if name in columns:
            string_column(name, columns[name], contract.max_string_length, nullable=name != contracts.FEATURE_KEY)
    if contracts.FEATURE_SPLIT_DATE in columns:
        _check_date_string(contracts.FEATURE_SPLIT_DATE, columns[contracts.FEATURE_SPLIT_DATE])
    numeric = [numeric_column(rule, columns[rule.name]) for rule in contract.numeric]
    categorical = []
    for rule in contract.categorical:
        values = string_column(rule.name, columns[rule.name], contract.max_string_length)
        check_categorical(rule, values, contract.max_string_length)
        categorical.append(values)
    return numeric, categorical


# ---- a Parquet frame (batch) --------------------------------------------------------------------

def check_frame(contract: ScoringContract, frame: pl.DataFrame) -> None:
    """Ranges and code sets of a batch frame whose columns and dtypes were already checked."""
    for rule in contract.numeric:
        values = frame[rule.name].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        check_numeric(rule, np.asarray(values, dtype=np.float64))
    key = contracts.FEATURE_KEY
    if key in frame.columns:
        lengths = frame[key].cast(pl.String).str.len_chars().fill_null(0).to_numpy()
        _first_bad(key, lengths > contract.max_string_length,
                   f"longer than {contract.max_string_length} characters", "")
    for crule in contract.categorical:
        strings = frame[crule.name].cast(pl.String)
        nulls = strings.is_null().to_numpy()
        _first_bad(crule.name, nulls, "null", crule.allowed())
        check_categorical(crule, np.asarray(strings.to_list(), dtype=object), contract.max_string_length)
