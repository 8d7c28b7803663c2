"""The trained model's files in models/ (written by train; read by evaluate, monitor, serving)."""

from __future__ import annotations

import json
from typing import Any

from pipelines.config import Paths
from pipelines.errors import MissingInputError

MODEL_FILE = "model.joblib"
META_FILE = "model_meta.json"


def load_model(paths: Paths) -> tuple[dict[str, Any], dict[str, Any]]:
    """(bundle, meta) of the trained model, from models/ (no MLflow needed)."""
    from pipelines.model.pyfunc_model import load_bundle

    for name in (MODEL_FILE, META_FILE):
        if not (paths.models / name).is_file():
            raise MissingInputError(f"{paths.models / name}: trained model not found (run the train stage first)")
    meta = json.loads((paths.models / META_FILE).read_text(encoding="utf-8"))
    return load_bundle(str(paths.models / MODEL_FILE)), meta
