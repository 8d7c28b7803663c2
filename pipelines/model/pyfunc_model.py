"""The served model: an MLflow pyfunc wrapping the fitted sklearn pipeline and its threshold.

This file is logged as MLflow "model code" (mlflow.pyfunc.log_model(python_model=<this file>)),
so it must stay self-contained: it imports numpy, pandas, joblib and mlflow only, never the
`pipelines` package. The pipeline and threshold come from the `bundle` artifact, a joblib dict
written by the train stage (the same file as models/model.joblib):

    {"format": 1, "pipeline": Pipeline, "threshold": float,
     "numeric": [...], "categorical": [...]}

predict(frame) -> DataFrame[probability: float64, high_risk: int64 (probability >= threshold)].

Input contract of the pyfunc (`check_input`, applied by `ReadmissionModel.predict`, so by the REST
server and by batch scoring; in-process `predict_frame` does not check): the rows of the feature
mart ml_readmission_features without the label. Every feature column must be there; `stay_id` and
`discharge_date` may come along and are ignored; any other column (the label included) is refused.
Numeric features are JSON numbers (integer features whole numbers), categorical features strings;
null / NaN is allowed in `days_since_last_discharge` only (no earlier stay); infinities never.
A violation raises MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers
with HTTP 400 and the message, naming the column, the row and the offending value.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import joblib
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

BUNDLE_ARTIFACT = "bundle"

# Copies of pipelines.contracts facts (this file may not import the package; a test checks them).
LABEL = "readmitted_30d"
PASSTHROUGH = ("stay_id", "discharge_date")  # mart columns a client may send; not model inputs
FLOAT_FEATURES = ("deprivation_rate", "stay_cost")  # every other numeric feature is an integer
NULLABLE_FEATURES = ("days_since_last_discharge",)  # null when the patient has no earlier stay


class InputError(ValueError):
    """A request the model cannot score; the message names the column and what is wrong."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


def load_bundle(path: str) -> dict[str, Any]:
    bundle: dict[str, Any] = joblib.load(path)
    if bundle.get("format") != 1:
        raise ValueError(f"{path}: unknown model bundle format {bundle.get('format')!r}")
    return bundle


def model_frame(bundle: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns, numerics as float64 (None/ints from JSON become NaN/floats)."""
    missing = [c for c in bundle["numeric"] + bundle["categorical"] if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks feature column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=frame.index)
    for col in bundle["numeric"]:
        out[col] = pd.to_numeric(frame[col], errors="raise").astype("float64")
    for col in bundle["categorical"]:
        values = frame[col].astype("object")
        out[col] = values.where(values.notna(), None)
    return out


def predict_frame(bundle: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    probability = bundle["pipeline"].predict_proba(model_frame(bundle, frame))[:, 1].astype("float64")
    high_risk = (probability >= bundle["threshold"]).astype(np.int64)
    return pd.DataFrame({"probability": probability, "high_risk": high_risk}, index=frame.index)


# ---- input checks ---------------------------------------------------------------------------

def _show(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_numeric(name: str, values: pd.Series, integer: bool, nullable: bool) -> None:
    kind = "an integer" if integer else "a number"
    if values.dtype == bool or isinstance(values.dtype, pd.BooleanDtype):
        raise InputError(f"column '{name}': expected {kind}, got a boolean (row 0: {_show(values.iloc[0])})", name)
    if pd.api.types.is_numeric_dtype(values.dtype):
        array = values.to_numpy(dtype="float64", na_value=np.nan)
    else:  # object column: JSON values of mixed types; check each one
        for row, value in enumerate(values.tolist()):
            if _is_missing(value):
                continue
            if isinstance(value, bool | np.bool_) or not isinstance(value, Real | np.number):
                raise InputError(
                    f"column '{name}': expected {kind}, got {type(value).__name__} {_show(value)} (row {row})", name)
        array = np.array([np.nan if _is_missing(v) else float(v) for v in values.tolist()], dtype="float64")
    missing = np.isnan(array)
    if missing.any() and not nullable:
        raise InputError(
            f"column '{name}': null/NaN at row {_first(missing)}; only "
            f"{', '.join(NULLABLE_FEATURES)} may be null", name)
    infinite = np.isinf(array)
    if infinite.any():
        raise InputError(f"column '{name}': infinite value at row {_first(infinite)}", name)
    if integer:
        fractional = ~missing & (np.floor(array) != array)
        if fractional.any():
            row = _first(fractional)
            raise InputError(f"column '{name}': expected an integer, got {_show(array[row])} (row {row})", name)


def _check_categorical(name: str, values: pd.Series) -> None:
    for row, value in enumerate(values.tolist()):
        if _is_missing(value):
            raise InputError(f"column '{name}': null at row {row}; expected a string", name)
        if not isinstance(value, str):
            raise InputError(
                f"column '{name}': expected a string, got {type(value).__name__} {_show(value)} (row {row})", name)


def check_input(bundle: dict[str, Any], frame: pd.DataFrame) -> None:
    """Refuse what the model must not score (see the module docstring); InputError names the column."""
    numeric, categorical = list(bundle["numeric"]), list(bundle["categorical"])
    features = numeric + categorical
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        doubled = sorted({c for c in columns if columns.count(c) > 1})
        raise InputError(f"duplicate column(s): {', '.join(doubled)}", doubled[0])
    if LABEL in columns:
        raise InputError(f"column '{LABEL}' is the label, not an input: remove it from the request", LABEL)
    missing = [c for c in features if c not in columns]
    if missing:
        raise InputError(f"missing feature column(s): {', '.join(missing)}", missing[0])
    extra = [c for c in columns if c not in features and c not in PASSTHROUGH]
    if extra:
        raise InputError(
            f"unexpected column(s): {', '.join(extra)}; the model takes the feature columns "
            f"({', '.join(features)}) and optionally {', '.join(PASSTHROUGH)}", extra[0])
    if len(frame) == 0:
        raise InputError("no rows to score: send at least one feature row")
    for name in numeric:
        _check_numeric(name, frame[name], integer=name not in FLOAT_FEATURES, nullable=name in NULLABLE_FEATURES)
    for name in categorical:
        _check_categorical(name, frame[name])


class ReadmissionModel(PythonModel):  # type: ignore[misc]
    """30-day readmission risk: probability and high_risk flag at the validation threshold."""

    def load_context(self, context: Any) -> None:
        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])

    # pd.DataFrame is a type hint MLflow accepts without inferring a schema from it: the
    # signature logged with the model is the schema.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            check_input(self.bundle, frame)
        except InputError as exc:  # -> HTTP 400 from the scoring server, with this message
            raise MlflowException.invalid_parameter_value(
                f"invalid input: {exc}", error_class="INVALID_FEATURE_INPUT", column=exc.column) from None
        return predict_frame(self.bundle, frame)


set_model(ReadmissionModel())
