"""The optional inputs of the dashboard: outputs of the model, monitoring and promotion stages.

Each is read when present; when missing (the stage has not run) or unreadable, the section
still renders and says so. Nothing here fails the report stage.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import Paths


@dataclass(frozen=True)
class Input:
    """One optional JSON input: its data, or why there is none."""

    name: str  # the stage that writes it
    path: Path
    data: dict[str, Any] | None
    problem: str | None = None  # "missing" or the read error

    @property
    def ok(self) -> bool:
        return self.data is not None

    def notice(self, root: Path) -> str:
        rel = _rel(self.path, root)
        if self.problem == "missing":
            return f"The {self.name} stage has not run yet: {rel} was not found."
        return f"{rel} could not be read ({self.problem}); rerun the {self.name} stage."


@dataclass(frozen=True)
class Inputs:
    evaluate: Input
    model_meta: Input
    fairness: Input
    drift: Input
    promotion: Input
    pr_curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # model -> (recall, precision)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def read_json(name: str, path: Path) -> Input:
    if not path.is_file():
        return Input(name, path, None, "missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Input(name, path, None, f"{type(exc).__name__}: {exc}")
    if not isinstance(data, dict):
        return Input(name, path, None, "expected a JSON object")
    return Input(name, path, data)


def read_pr_curves(path: Path) -> dict[str, list[tuple[float, float]]]:
    """reports/plots/pr_curve.csv (model, recall, precision) -> model -> points, file order."""
    if not path.is_file():
        return {}
    curves: dict[str, list[tuple[float, float]]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                curves.setdefault(row["model"], []).append((float(row["recall"]), float(row["precision"])))
    except (OSError, KeyError, ValueError):
        return {}
    return curves


def load_inputs(paths: Paths) -> Inputs:
    return Inputs(
        evaluate=read_json("evaluate", paths.metrics / "evaluate.json"),
        model_meta=read_json("train", paths.models / "model_meta.json"),
        fairness=read_json("monitor", paths.reports / "monitoring" / "fairness.json"),
        drift=read_json("monitor", paths.reports / "monitoring" / "drift.json"),
        promotion=read_json("promote", paths.reports / "promotion.json"),
        pr_curves=read_pr_curves(paths.reports / "plots" / "pr_curve.csv"),
    )
