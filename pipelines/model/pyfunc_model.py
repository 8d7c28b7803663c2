"""The served model: an MLflow pyfunc wrapping the fitted sklearn pipeline and its threshold.

This file is logged as MLflow "model code" (mlflow.pyfunc.log_model(python_model=<this file>)),
so it must stay self-contained: it imports numpy, pandas, joblib and mlflow only, never the
`pipelines` package (but for its error base class). The pipeline and threshold come from the
`bundle` artifact, a joblib dict written by the train stage (the same file as models/model.joblib):

    {"format": 2, "pipeline": Pipeline, "threshold": float,
     "numeric": [...], "categorical": [...],
     "calibration": {"method": "sigmoid", "slope": a, "intercept": b}
                  | {"method": "isotonic", "x": [...], "y": [...]} | {"method": "none"}}

Format 1 (versions registered before calibration) has no "calibration" and reads as "none".

In memory it is a `ModelBundle`, read and written by `read_bundle` / `write_bundle` only. The file
stays a plain dict: every registered version holds one, and a pickled class would tie the file to
a module name (MLflow loads this file as a fresh module per version).

predict(frame) -> DataFrame[probability: float64, high_risk: int64 (probability >= threshold)].
`probability` is calibrated: the forest's score passed through the bundle's calibration map,
fitted by train on the validation window; the threshold is on that scale. With the param
`reasons: k` (REST: {"params": {"reasons": k}}), k pairs of columns follow: reason_i (a feature
name) and reason_i_contribution, the features that raise this row's forest score the most
(see `CompiledForest.contributions`).

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
BUNDLE_FORMAT = 2  # the joblib dict's layout written today; read_bundle also reads format 1
READ_FORMATS = (1, 2)
BUNDLE_KEYS = ("format", "pipeline", "threshold", "numeric", "categorical", "calibration")  # file order
CALIBRATION_METHODS = ("sigmoid", "isotonic", "none")
LOGIT_EPS = 1e-6  # the sigmoid map reads logit(clip(score, eps, 1 - eps)): a forest score can be 0 or 1
MAX_REASONS = 10

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


def logit(score: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(score, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(clipped) - np.log1p(-clipped)


@dataclass(frozen=True)
class Calibration:
    """The monotone map from the forest's score to a probability (fitted on the validation window).

    sigmoid: 1 / (1 + exp(-(slope x logit(score) + intercept))), Platt scaling on the logit: keeps
    the ranking, so every AUC and the flagged rows are the forest's own. isotonic: the step-wise
    linear map through (x, y), as sklearn's IsotonicRegression(out_of_bounds="clip") predicts.
    none: the score itself."""

    method: str = "none"
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, score: np.ndarray) -> np.ndarray:
        score = np.asarray(score, dtype=np.float64)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(self.slope * logit(score) + self.intercept)))
        if self.method == "isotonic":
            return np.asarray(np.interp(score, np.asarray(self.x), np.asarray(self.y)), dtype=np.float64)
        return score

    def to_payload(self) -> dict[str, Any]:
        if self.method == "sigmoid":
            return {"method": "sigmoid", "slope": float(self.slope), "intercept": float(self.intercept)}
        if self.method == "isotonic":
            return {"method": "isotonic", "x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}
        return {"method": "none"}

    @classmethod
    def from_payload(cls, payload: object, source: str) -> Calibration:
        if not isinstance(payload, Mapping) or payload.get("method") not in CALIBRATION_METHODS:
            raise BundleError(f"{source}: calibration must be a dict with method one of "
                              f"{', '.join(CALIBRATION_METHODS)}")
        method = str(payload["method"])
        try:
            if method == "sigmoid":
                return cls(method, slope=float(payload["slope"]), intercept=float(payload["intercept"]))
            if method == "isotonic":
                x, y = tuple(float(v) for v in payload["x"]), tuple(float(v) for v in payload["y"])
                if len(x) != len(y) or not x or bool(np.any(np.diff(x) < 0)):
                    raise ValueError("x and y must be equally long, x increasing")
                return cls(method, x=x, y=y)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{source}: {method} calibration is malformed ({exc})") from None
        return cls()


@dataclass(frozen=True)
class ModelBundle:
    """The fitted pipeline, its operating threshold and its input columns (models/model.joblib)."""

    pipeline: Any  # sklearn Pipeline: "prep" (ColumnTransformer) then "rf" for the train stage's
    threshold: float  # high_risk = probability >= threshold (the calibrated probability)
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    calibration: Calibration = Calibration()

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_payload(self) -> dict[str, Any]:
        """The joblib dict (format 2), keys in BUNDLE_KEYS order."""
        return {"format": BUNDLE_FORMAT, "pipeline": self.pipeline, "threshold": float(self.threshold),
                "numeric": list(self.numeric), "categorical": list(self.categorical),
                "calibration": self.calibration.to_payload()}

    @classmethod
    def from_payload(cls, payload: object, source: str = "model bundle") -> ModelBundle:
        """The bundle of a format-1 or -2 dict; BundleError names `source` and what is wrong."""
        if not isinstance(payload, Mapping):
            raise BundleError(f"{source}: not a model bundle (a {type(payload).__name__}, expected a dict)")
        fmt = payload.get("format")
        if fmt not in READ_FORMATS:
            raise BundleError(f"{source}: unknown model bundle format {fmt!r} "
                              f"(this code reads formats {', '.join(map(str, READ_FORMATS))}; re-run the train stage)")
        needed = BUNDLE_KEYS if fmt == 2 else BUNDLE_KEYS[:-1]
        missing = [key for key in needed if key not in payload]
        if missing:
            raise BundleError(f"{source}: model bundle lacks key(s) {', '.join(missing)} (re-run the train stage)")
        calibration = Calibration.from_payload(payload["calibration"], source) if fmt == 2 else Calibration()
        return cls(payload["pipeline"], float(payload["threshold"]), tuple(payload["numeric"]),
                   tuple(payload["categorical"]), calibration)


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
    """probability (calibrated) and high_risk per row. `compiled` (the pipeline as arrays, see
    CompiledPipeline) computes the same bits faster; it expects input that passed `check_input`."""
    probability = bundle.calibration.apply(forest_score(bundle, frame, compiled))
    high_risk = (probability >= bundle.threshold).astype(np.int64)
    return pd.DataFrame({"probability": probability, "high_risk": high_risk}, index=frame.index)


def forest_score(bundle: ModelBundle, frame: pd.DataFrame, compiled: CompiledPipeline | None = None
                 ) -> np.ndarray:
    """The pipeline's uncalibrated positive-class score per row."""
    if compiled is None:
        return np.asarray(bundle.pipeline.predict_proba(model_frame(bundle, frame))[:, 1], dtype=np.float64)
    return compiled.predict_positive(frame)


def reason_columns(compiled: CompiledPipeline, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """reason_1..k (feature names, largest contribution first) and reason_i_contribution per row.

    A row's reasons are its features with the largest positive contributions to the forest score;
    a slot with no positive contribution left holds None and 0.0."""
    contributions = compiled.contributions(frame)
    names = np.asarray(compiled.feature_names, dtype=object)
    k = min(k, len(names))
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(contributions, order, axis=1)
    out: dict[str, Any] = {}
    for i in range(k):
        positive = top[:, i] > 0
        reason = names[order[:, i]]
        reason[~positive] = None
        out[f"reason_{i + 1}"] = reason
        out[f"reason_{i + 1}_contribution"] = np.where(positive, np.round(top[:, i], 6), 0.0)
    return pd.DataFrame(out, index=frame.index)


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

    def contributions(self, x: Any, chunk_rows: int = 2048) -> np.ndarray:
        """Per row and input column, the column's share of the forest score (rows x columns).

        Each split on the way down moves the node's positive-class value; the move is credited to
        the split's column (the decision-path attribution of Saabas / treeinterpreter, not SHAP),
        averaged over trees. bias + the row's sum is its score, bias being the mean root value."""
        x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
        if x64.shape[0] > chunk_rows:
            return np.concatenate([self.contributions(x64[i:i + chunk_rows], chunk_rows)
                                   for i in range(0, x64.shape[0], chunk_rows)])
        n, trees = x64.shape[0], len(self.roots)
        node = np.repeat(self.roots[:, None], n, axis=1)
        rows = np.arange(n)[None, :]
        out = np.zeros(n * self.n_features, dtype=np.float64)
        row_offset = rows * self.n_features
        for _ in range(self.depth):
            feature = self.feature[node]
            values = x64[rows, feature]
            go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
            child = np.where(go_left, self.left[node], self.right[node])
            # a leaf is its own child: it adds 0; bincount sums the moves per (row, column)
            out += np.bincount((row_offset + feature).ravel(), weights=(self.value[child] - self.value[node]).ravel(),
                               minlength=out.size)
            node = child
        return out.reshape(n, self.n_features) / trees

    @property
    def bias(self) -> float:
        return float(self.value[self.roots].mean())

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
        # matrix column -> feature index (numerics one column each, then each one-hot block)
        owners = list(range(len(self.numeric)))
        for i, categories in enumerate(self.categories):
            owners += [len(self.numeric) + i] * len(categories)
        self.column_owner = np.zeros((len(owners), len(owners) and max(owners) + 1), dtype=np.float64)
        self.column_owner[np.arange(len(owners)), owners] = 1.0  # columns x features, one 1 per row

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """CompiledForest.contributions summed over each feature's columns (rows x features)."""
        return np.asarray(self.forest.contributions(self.matrix(frame)) @ self.column_owner)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        blocks = [frame[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan)]
        for col, categories in zip(self.categorical, self.categories, strict=True):
            values = frame[col].to_numpy(dtype=object)
            blocks.append((values[:, None] == categories[None, :]).astype(np.float64))
        return np.hstack(blocks)

    def predict_positive(self, frame: pd.DataFrame) -> np.ndarray:
        return self.forest.predict_positive(self.matrix(frame))

    def array_matrix(self, numeric: list[np.ndarray], categorical: list[np.ndarray]) -> np.ndarray:
        """`matrix` from checked columns (float64 with NaN; str objects) in numeric/categorical order."""
        blocks = [np.column_stack(numeric).astype(np.float64, copy=False)]
        for values, categories in zip(categorical, self.categories, strict=True):
            blocks.append((np.asarray(values, dtype=object)[:, None] == categories[None, :]).astype(np.float64))
        return np.hstack(blocks)

    def predict_arrays(self, numeric: list[np.ndarray], categorical: list[np.ndarray]) -> np.ndarray:
        """The uncalibrated score from checked columns: the REST fast path, no DataFrame."""
        return self.forest.predict_positive(self.array_matrix(numeric, categorical))

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
        compiled = getattr(self, "compiled", None)
        predicted = predict_frame(self.bundle, frame, compiled)
        k = requested_reasons(params)
        if not k:
            return predicted
        if compiled is None:
            raise MlflowException.invalid_parameter_value(
                "reasons are not available for this model (its pipeline does not compile)")
        return pd.concat([predicted, reason_columns(compiled, frame, k)], axis=1)


def requested_reasons(params: Mapping[str, Any] | None) -> int:
    """The `reasons` param: 0 (none) to MAX_REASONS; anything else is refused."""
    value = (params or {}).get("reasons", 0)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= int(value) <= MAX_REASONS:
        raise MlflowException.invalid_parameter_value(
            f"param 'reasons' must be a whole number from 0 to {MAX_REASONS}")
    return int(value)


set_model(ReadmissionModel())
