"""A small generated extract, dirtier than the default so that every corruption kind occurs, then cleaned."""

from __future__ import annotations

from pathlib import Path

from pipelines.clean import run_clean
from pipelines.config import Params, Paths
from pipelines.generate import run_generate

# The shared dirty extract of tests/data/conftest.py: every corruption kind occurs many times.
DIRTY_PATIENTS = 5000
DIRTY_CHUNK_PATIENTS = 2000


def dirty_params(patients: int, chunk_patients: int, dirt_factor: float = 4.0) -> Params:
    """The default params with `patients` beneficiaries and every dirt rate times `dirt_factor`."""
    data = Params().model_dump()
    data["generate"]["patients"] = patients
    data["generate"]["chunk_patients"] = chunk_patients
    data["generate"]["dirt"] = {k: v * dirt_factor for k, v in data["generate"]["dirt"].items()}
    return Params.model_validate(data)


def generate_and_clean(root: Path, patients: int, chunk_patients: int, dirt_factor: float = 4.0) -> Params:
    """Generate `patients` beneficiaries with every dirt rate times `dirt_factor`, clean without a loss ceiling."""
    params = dirty_params(patients, chunk_patients, dirt_factor)
    run_generate(Paths(root), params, progress=False)
    run_clean(Paths(root), params.clean.model_copy(update={"max_quarantine_share": 1.0}))
    return params
