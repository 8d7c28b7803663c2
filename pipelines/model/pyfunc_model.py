"""The served model: an MLflow pyfunc wrapping the fitted sklearn pipeline and its threshold.

This file is logged as MLflow "model code" (mlflow.pyfunc.log_model(python_model=<this file>)),
so it must stay self-contained: it imports numpy, pandas, joblib and mlflow only, never the
`pipelines` package (but for its error base class). The pipeline and threshold come from the
`bundle` artifact, a joblib dict written by the train stage (the same file as models/model.joblib):

    {"format": 1, "pipeline": Pipeline, "threshold": float,
     "numeric": [...], "categorical": [...]}

In memory it is a `ModelBundle`, read and written by `read_bundle` / `write_bundle` only. The file
stays a plain dict: every registered version holds one, and a pickled class would tie the file to
a module name (MLflow loads this file as a fresh module per version).

predict(frame) -> DataFrame[probability: float64, high_risk: int64 (probability >= threshold)].

Input contract of the pyfunc (`check_input`, applied by `ReadmissionModel.predict`, so by the REST
server and by batch scoring; in-process `predict_frame` does not check): the rows of the feature
mart ml_readmission_features without the label. Every feature column must be there; `stay_id` and
`discharge_date` may come along and are ignored; any other column (the label included) is refused.
Numeric features are JSON numbers (integer features whole numbers), categorical features strings;
null / NaN is allowed in `days_since_last_discharge` only (no earlier stay); infinities never.
A violation raises MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers
with HTTP 400 and the message, naming the column and the row but never the value (health data).
Ranges and code sets are checked in front of the model by the project's server and batch
scoring (pipelines/model/scoring_contract.py), which this file may not import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

from pipelines.errors import PipelineInputError

BUNDLE_ARTIFACT = "bundle"
BUNDLE_FORMAT = 1  # the joblib dict's layout; read_bundle refuses any other
BUNDLE_KEYS = ("format", "pipeline", "threshold", "numeric", "categorical")  # the dict's keys, in file order

# Copies of pipelines.contracts facts (this file may not import the package; a test checks them).
LABEL = "readmitted_30d"
PASSTHROUGH = ("stay_id", "discharge_date")  # mart columns a client may send; not model inputs
FLOAT_FEATURES = ("deprivation_rate", "stay_cost")  # every other numeric feature is an integer
NULLABLE_FEATURES = ("days_since_last_discharge",)  # null when the patient has no earlier stay


class InputError(PipelineInputError, ValueError):
    """A request the model cannot score; the message names the column and what is wrong."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class BundleError(PipelineInputError, ValueError):
    """models/model.joblib (or a version's bundle artifact) is not a format-1 bundle."""


@dataclass(frozen=True)
class ModelBundle:
    """The fitted pipeline, its operating threshold and its input columns (models/model.joblib)."""

    pipeline: Any  # sklearn Pipeline: "prep" (ColumnTransformer) then "rf" for the train stage's
    threshold: float  # high_risk = probability >= threshold
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_payload(self) -> dict[str, Any]:
        """The joblib dict (format 1), keys in the order train has always written them."""
        return {"format": BUNDLE_FORMAT, "pipeline": self.pipeline, "threshold": float(self.threshold),
                "numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_payload(cls, payload: object, source: str = "model bundle") -> ModelBundle:
        """The bundle of a format-1 dict; BundleError names `source` and what is wrong."""
        if not isinstance(payload, Mapping):
            raise BundleError(f"{source}: not a model bundle (a {type(payload).__name__}, expected a dict)")
        if payload.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{source}: unknown model bundle format {payload.get('format')!r} "
                              f"(this code reads format {BUNDLE_FORMAT}; re-run the train stage)")
        missing = [key for key in BUNDLE_KEYS if key not in payload]
        if missing:
            raise BundleError(f"{source}: model bundle lacks key(s) {', '.join(missing)} (re-run the train stage)")
        return cls(payload["pipeline"], float(payload["threshold"]), tuple(payload["numeric"]),
                   tuple(payload["categorical"]))


def read_bundle(path: str | Path) -> ModelBundle:
    return ModelBundle.from_payload(joblib.load(path), str(path))


def write_bundle(path: str | Path, bundle: ModelBundle) -> None:
    joblib.dump(bundle.to_payload(), path, compress=3)


def loaded_bundle(pyfunc: Any) -> ModelBundle | None:
    """The bundle of a model loaded by mlflow.pyfunc.load_model; None for another flavour or format.

    Versions logged before ModelBundle hold the plain dict; newer ones hold a ModelBundle of their
    own copy of this file, a class MLflow loaded under another module name: both are accepted."""
    try:
        held = getattr(pyfunc.unwrap_python_model(), "bundle", None)
    except Exception:  # not a python_model flavour
        return None
    to_payload = getattr(held, "to_payload", None)
    try:
        return ModelBundle.from_payload(to_payload() if callable(to_payload) else held)
    except (BundleError, TypeError, ValueError):
        return None


def model_frame(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns, numerics as float64 (None/ints from JSON become NaN/floats)."""
    missing = [c for c in bundle.features if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks feature column(s): {', '.join(missing)}")
    columns: dict[str, np.ndarray] = {}
    for col in bundle.numeric:
        columns[col] = pd.to_numeric(frame[col], errors="raise").to_numpy(dtype="float64", na_value=np.nan)
    for col in bundle.categorical:
        values: Any = frame[col].astype("object")  # pandas-stubs: no where(..., None) overload
        columns[col] = values.where(values.notna(), None).to_numpy(dtype=object)
    return pd.DataFrame(columns, index=frame.index)  # one constructor: column inserts cost ~0.5 ms each


def predict_frame(bundle: ModelBundle, frame: pd.DataFrame, compiled: CompiledPipeline | None = None
                  ) -> pd.DataFrame:
    """probability and high_risk per row. `compiled` (the pipeline as arrays, see CompiledPipeline)
    computes the same bits faster; it expects input that passed `check_input`."""
    if compiled is None:
        probability = bundle.pipeline.predict_proba(model_frame(bundle, frame))[:, 1].astype("float64")
    else:
        probability = compiled.predict_positive(frame)
    high_risk = (probability >= bundle.threshold).astype(np.int64)
    return pd.DataFrame({"probability": probability, "high_risk": high_risk}, index=frame.index)


class CompiledForest:
    """A fitted binary RandomForestClassifier as flat node arrays, walked with numpy for all trees at once.

    Same arithmetic as sklearn's predict_proba, so the same bits: inputs cast to float32 then
    compared (as double) with each node's threshold, NaN sent where the node's
    missing_go_to_left says, each tree's leaf value for the positive class, summed tree by tree
    in estimator order, divided by the number of trees. sklearn pays a joblib dispatch and input
    validation per tree (~0.1 ms x hundreds of trees per request); this pays a few numpy calls
    per tree level. `build` checks it against sklearn on rows made of the forest's own
    thresholds (the boundary cases) and NaN, and returns None (sklearn is used) on any difference.
    """

    def __init__(self, forest: Any) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        counts = np.array([t.node_count for t in trees], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        positive = int(np.flatnonzero(np.asarray(forest.classes_) == 1)[0])
        feature, threshold, left, right, missing_left, value = [], [], [], [], [], []
        for tree, offset in zip(trees, offsets, strict=True):
            own = np.arange(tree.node_count, dtype=np.intp) + offset
            leaf = tree.children_left == -1
            feature.append(np.where(leaf, 0, tree.feature).astype(np.intp))
            threshold.append(np.where(leaf, np.inf, tree.threshold).astype(np.float64))
            left.append(np.where(leaf, own, tree.children_left + offset).astype(np.intp))
            right.append(np.where(leaf, own, tree.children_right + offset).astype(np.intp))
            missing_left.append(np.asarray(tree.missing_go_to_left, dtype=bool))
            value.append(tree.value[:, 0, positive].astype(np.float64))
        self.roots = offsets
        self.feature, self.threshold = np.concatenate(feature), np.concatenate(threshold)
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.missing_left, self.value = np.concatenate(missing_left), np.concatenate(value)
        self.depth = max(int(t.max_depth) for t in trees)
        self.n_features = int(forest.n_features_in_)

    def predict_positive(self, x: Any, chunk_rows: int = 2048) -> np.ndarray:
        x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
        if x64.shape[0] > chunk_rows:  # bounded memory: (trees x rows) index arrays per chunk
            return np.concatenate([self.predict_positive(x64[i:i + chunk_rows], chunk_rows)
                                   for i in range(0, x64.shape[0], chunk_rows)])
        n = x64.shape[0]
        node = np.repeat(self.roots[:, None], n, axis=1)
        rows = np.arange(n)[None, :]
        for _ in range(self.depth):
            values = x64[rows, self.feature[node]]
            go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        leaves = self.value[node]
        out = np.zeros(n, dtype=np.float64)
        for per_tree in leaves:  # tree by tree, as sklearn accumulates
            out += per_tree
        out /= len(self.roots)
        return out

    @classmethod
    def build(cls, pipeline: Any, n_check: int = 256, seed: int = 0) -> CompiledForest | None:
        forest = getattr(pipeline, "named_steps", {}).get("rf")
        if forest is None or type(forest).__name__ != "RandomForestClassifier" \
                or list(getattr(forest, "classes_", [])) != [0, 1]:
            return None
        try:
            compiled = cls(forest)
            rng = np.random.default_rng(seed)
            check = np.empty((n_check, compiled.n_features), dtype=np.float64)
            for f in range(compiled.n_features):
                used = compiled.threshold[(compiled.feature == f) & np.isfinite(compiled.threshold)]
                pool = np.concatenate([used, used.astype(np.float32).astype(np.float64), [np.nan, 0.0, 1.0]])
                check[:, f] = rng.choice(pool, n_check)
            expected = forest.predict_proba(check)[:, 1]
            if not np.array_equal(compiled.predict_positive(check), expected):
                return None
        except Exception:  # any surprise in the tree structure: sklearn's own path
            return None
        return compiled


class CompiledPipeline:
    """The whole fitted pipeline as arrays: numeric passthrough + one-hot (unknown -> zeros), then the
    CompiledForest. For a one-row request sklearn's ColumnTransformer and the DataFrame copy before
    it cost ~5 ms; this costs a few numpy calls. `build` compares matrix and probabilities with
    sklearn on generated rows (every category, an unseen one, NaN) and returns None on any
    difference, or for a pipeline of another shape: predict_frame then uses sklearn."""

    def __init__(self, bundle: ModelBundle, forest: CompiledForest) -> None:
        prep = bundle.pipeline.named_steps["prep"]
        self.numeric, self.categorical = list(bundle.numeric), list(bundle.categorical)
        steps = [(trans, list(cols)) for name, trans, cols in prep.transformers_ if name != "remainder"]
        if len(steps) != 2 or steps[0][1] != self.numeric or steps[1][1] != self.categorical:
            raise ValueError("unexpected column layout")
        encoder = steps[1][0]
        if type(encoder).__name__ != "OneHotEncoder" or encoder.drop_idx_ is not None \
                or getattr(encoder, "_infrequent_enabled", False) or encoder.handle_unknown != "ignore":
            raise ValueError("unexpected encoder")
        self.categories = [np.asarray(c, dtype=object) for c in encoder.categories_]
        self.forest = forest

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        blocks = [frame[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan)]
        for col, categories in zip(self.categorical, self.categories, strict=True):
            values = frame[col].to_numpy(dtype=object)
            blocks.append((values[:, None] == categories[None, :]).astype(np.float64))
        return np.hstack(blocks)

    def predict_positive(self, frame: pd.DataFrame) -> np.ndarray:
        return self.forest.predict_positive(self.matrix(frame))

    def predict_arrays(self, numeric: list[np.ndarray], categorical: list[np.ndarray]) -> np.ndarray:
        """The same from checked columns (float64 with NaN; str objects) in numeric/categorical order:
        the REST fast path, no DataFrame."""
        blocks = [np.column_stack(numeric).astype(np.float64, copy=False)]
        for values, categories in zip(categorical, self.categories, strict=True):
            blocks.append((np.asarray(values, dtype=object)[:, None] == categories[None, :]).astype(np.float64))
        return self.forest.predict_positive(np.hstack(blocks))

    @classmethod
    def build(cls, bundle: ModelBundle, n_check: int = 256, seed: int = 1) -> CompiledPipeline | None:
        forest = CompiledForest.build(bundle.pipeline)
        if forest is None:
            return None
        try:
            compiled = cls(bundle, forest)
            rng = np.random.default_rng(seed)
            check: dict[str, Any] = {}
            for col in compiled.numeric:
                values = rng.integers(0, 100, n_check).astype(np.float64) + rng.choice([0.0, 0.25, 0.5], n_check)
                check[col] = np.where(rng.random(n_check) < 0.1, np.nan, values)
            for col, categories in zip(compiled.categorical, compiled.categories, strict=True):
                pool = [c for c in categories if isinstance(c, str)] + ["__unseen__"]
                check[col] = rng.choice(np.asarray(pool, dtype=object), n_check)
            frame = pd.DataFrame(check)
            sklearn_x = bundle.pipeline.named_steps["prep"].transform(model_frame(bundle, frame))
            if not np.array_equal(np.asarray(sklearn_x, dtype=np.float64), compiled.matrix(frame), equal_nan=True):
                return None
            expected = bundle.pipeline.predict_proba(model_frame(bundle, frame))[:, 1]
            if not np.array_equal(compiled.predict_positive(frame), expected):
                return None
        except Exception:  # a pipeline of another shape: sklearn's own path
            return None
        return compiled


# ---- input checks ---------------------------------------------------------------------------

def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_numeric(name: str, values: pd.Series, integer: bool, nullable: bool) -> None:
    kind = "an integer" if integer else "a number"
    if values.dtype == bool or isinstance(values.dtype, pd.BooleanDtype):
        raise InputError(f"column '{name}': expected {kind}, got a boolean (row 0)", name)
    if pd.api.types.is_numeric_dtype(values.dtype):
        array = values.to_numpy(dtype="float64", na_value=np.nan)
    else:  # object column: JSON values of mixed types; check each one
        for row, value in enumerate(values.tolist()):
            if _is_missing(value):
                continue
            if isinstance(value, bool | np.bool_) or not isinstance(value, Real | np.number):
                raise InputError(
                    f"column '{name}': expected {kind}, got {type(value).__name__} (row {row})", name)
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
            raise InputError(f"column '{name}': expected an integer, got a fraction (row {row})", name)


def _check_categorical(name: str, values: pd.Series) -> None:
    for row, value in enumerate(values.tolist()):
        if _is_missing(value):
            raise InputError(f"column '{name}': null at row {row}; expected a string", name)
        if not isinstance(value, str):
            raise InputError(
                f"column '{name}': expected a string, got {type(value).__name__} (row {row})", name)


def check_input(bundle: ModelBundle, frame: pd.DataFrame) -> None:
    """Refuse what the model must not score (see the module docstring); InputError names the column."""
    numeric, categorical = list(bundle.numeric), list(bundle.categorical)
    features = numeric + categorical
    if len(frame) == 0:
        raise InputError("no rows to score: send at least one feature row")
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
    for name in numeric:
        _check_numeric(name, frame[name], integer=name not in FLOAT_FEATURES, nullable=name in NULLABLE_FEATURES)
    for name in categorical:
        _check_categorical(name, frame[name])


class ReadmissionModel(PythonModel):  # type: ignore[misc]
    """30-day readmission risk: probability and high_risk flag at the validation threshold."""

    def load_context(self, context: Any) -> None:
        self.bundle = read_bundle(context.artifacts[BUNDLE_ARTIFACT])
        self.compiled = CompiledPipeline.build(self.bundle)

    # pd.DataFrame is a type hint MLflow accepts without inferring a schema from it; the input
    # contract is enforced here (check_input), whatever input schema the logged signature declares.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            check_input(self.bundle, frame)
        except InputError as exc:  # -> HTTP 400 from the scoring server, with this message
            raise MlflowException.invalid_parameter_value(
                f"invalid input: {exc}", error_class="INVALID_FEATURE_INPUT", column=exc.column) from None
        return predict_frame(self.bundle, frame, getattr(self, "compiled", None))


set_model(ReadmissionModel())
