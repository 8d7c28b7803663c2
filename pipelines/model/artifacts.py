"""The trained model's files in models/ (written by train; read by evaluate, monitor, promote, serving).

model.joblib     a ModelBundle (read_bundle / write_bundle): the fitted pipeline, its threshold
                 and its input columns. Defined in pipelines/model/pyfunc_model.py, the MLflow
                 model code, which may import nothing of the package but its errors; re-exported
                 here, so stages import the bundle and the metadata from this module.
model_meta.json  a ModelMeta (read_meta / write_meta): threshold, registered version, features,
                 split dates. No run id, git revision or time: the file is a DVC output, and the same
                 params and seed must give the same bytes on any machine (the run id is the registered
                 version's `run_id` in MLflow; older files that still hold one are read as before).

A file that cannot be used raises a PipelineInputError naming it (BundleError, ModelMetaError;
MissingInputError when absent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

from pipelines import metrics_io
from pipelines.config import Paths
from pipelines.errors import MissingInputError, PipelineInputError
from pipelines.model import handoffs
from pipelines.model.pyfunc_model import BundleError, ModelBundle, read_bundle, write_bundle

MODEL_FILE = "model.joblib"
META_FILE = "model_meta.json"

__all__ = ["META_FILE", "MODEL_FILE", "BundleError", "ModelBundle", "ModelMeta", "ModelMetaError", "load_model",
           "read_bundle", "read_meta", "write_bundle", "write_meta"]


class ModelMetaError(PipelineInputError):
    """models/model_meta.json lacks a key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class ModelMeta:
    """What train knows about the model it registered (models/model_meta.json)."""

    model_name: str
    version: str  # the registered model version
    model_uri: str  # models:/<model_name>/<version>
    experiment: str
    threshold: float  # rounded to metrics_io.DIGITS (the bundle holds the exact one)
    threshold_rule: str
    min_precision: float
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    train_end: date
    valid_end: date
    best_params: dict[str, Any]
    seed: int
    features_md5: str
    # how validation precision met min_precision (thresholds.BOUNDS); files written before say nothing: point
    threshold_bound: str = "point"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(numeric_features=list(self.numeric_features), categorical_features=list(self.categorical_features),
                    train_end=self.train_end.isoformat(), valid_end=self.valid_end.isoformat())
        return data

    @classmethod
    def from_json(cls, data: object, source: str = META_FILE) -> ModelMeta:
        """The metadata of model_meta.json's object; ModelMetaError names `source` and the key at fault."""
        if not isinstance(data, dict):
            raise ModelMetaError(f"{source}: expected a JSON object, found {type(data).__name__}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.name != "threshold_bound"]
        if missing:
            raise ModelMetaError(f"{source}: missing key(s) {', '.join(missing)} (re-run the train stage)")
        try:
            return cls(
                model_name=str(data["model_name"]), version=str(data["version"]), model_uri=str(data["model_uri"]),
                experiment=str(data["experiment"]), threshold=float(data["threshold"]),
                threshold_rule=str(data["threshold_rule"]), min_precision=float(data["min_precision"]),
                numeric_features=tuple(data["numeric_features"]),
                categorical_features=tuple(data["categorical_features"]),
                train_end=date.fromisoformat(data["train_end"]), valid_end=date.fromisoformat(data["valid_end"]),
                best_params=dict(data["best_params"]), seed=int(data["seed"]),
                features_md5=str(data["features_md5"]),
                threshold_bound=str(data.get("threshold_bound", "point")),
            )
        except (TypeError, ValueError) as exc:
            raise ModelMetaError(f"{source}: {exc}") from None


def read_meta(path: Path) -> ModelMeta:
    """models/model_meta.json as written by `write_meta` (the one reader of the file)."""
    return ModelMeta.from_json(handoffs.read_object(path, "model metadata", "train", ModelMetaError), str(path))


def write_meta(path: Path, meta: ModelMeta) -> None:
    metrics_io.write_json(path, meta.to_json())  # sorted keys, indent 2: same meta, same bytes


def load_model(paths: Paths) -> tuple[ModelBundle, ModelMeta]:
    """(bundle, meta) of the trained model, from models/ (no MLflow needed)."""
    for name in (MODEL_FILE, META_FILE):
        if not (paths.models / name).is_file():
            raise MissingInputError(f"{paths.models / name}: trained model not found (run the train stage first)")
    return read_bundle(paths.models / MODEL_FILE), read_meta(paths.models / META_FILE)
