"""Operating thresholds: highest recall at a precision floor.

A row is flagged high risk when its probability is >= the threshold. Candidate thresholds are
the distinct scores (sklearn's precision_recall_curve). Among those whose precision reaches the
floor, the one with the highest recall wins; recall ties go to the highest threshold (the
fewest flags for the same catch, so the highest precision).

`bound` says how a candidate's precision must reach the floor: "point" (its precision) or
"wilson_lower" (the 95% Wilson lower bound of its precision, flagged stays as trials). The final
model's threshold uses the bound: chosen at the edge of the floor on validation, a point estimate
falls under it on the next window about half the time, and further when the rate drifts down.

When no threshold reaches the floor:
* tuning (per CV fold): `recall_at_precision` returns None and the fold scores 0 (logged);
* the final model (`choose_threshold` on the validation window): with fallback="f2" the
  threshold maximising F2 (recall weighted 4x precision) is used and the operating point says
  rule="f2_fallback" so promotion can refuse it; with fallback="error" ThresholdError is raised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import precision_recall_curve

from pipelines.errors import PipelineInputError

RULE_FLOOR = "min_precision"
RULE_F2 = "f2_fallback"
Bound = Literal["point", "wilson_lower"]
BOUNDS: tuple[Bound, ...] = ("point", "wilson_lower")
Z_95 = 1.959963984540054


class ThresholdError(PipelineInputError, ValueError):
    """No threshold reaches the precision floor (and the fallback is 'error')."""


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    recall: float
    precision: float
    rule: str

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int)
    if y.sum() == 0:
        raise ThresholdError("no positive label: recall is undefined")
    precision, recall, thresholds = precision_recall_curve(y, np.asarray(scores, dtype=float))
    # The last (precision=1, recall=0) point has no threshold.
    return precision[:-1], recall[:-1], thresholds


def precision_lower_bound(precision: np.ndarray, recall: np.ndarray, positives: int, z: float = Z_95) -> np.ndarray:
    """The Wilson lower bound of each candidate's precision (flagged = true positives / precision)."""
    tp = recall * positives
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(precision > 0, np.rint(tp / np.where(precision > 0, precision, 1.0)), 1.0)
        centre = precision + z * z / (2 * n)
        half = z * np.sqrt(precision * (1 - precision) / n + z * z / (4 * n * n))
        lower = (centre - half) / (1 + z * z / n)
    return np.where(precision > 0, np.maximum(lower, 0.0), 0.0)


def recall_at_precision(y_true: np.ndarray, scores: np.ndarray, min_precision: float,
                        bound: Bound = "point") -> OperatingPoint | None:
    """Highest-recall threshold whose precision (or its lower bound) is >= min_precision, or None."""
    precision, recall, thresholds = _curve(y_true, scores)
    reached = precision if bound == "point" else precision_lower_bound(
        precision, recall, int(np.asarray(y_true).astype(int).sum()))
    ok = np.flatnonzero(reached >= min_precision)
    if ok.size == 0:
        return None
    best_recall = recall[ok].max()
    best = ok[recall[ok] == best_recall].max()  # thresholds increase with the index
    return OperatingPoint(float(thresholds[best]), float(recall[best]), float(precision[best]), RULE_FLOOR)


def max_f_beta(y_true: np.ndarray, scores: np.ndarray, beta: float = 2.0) -> OperatingPoint:
    """The threshold maximising F-beta (ties: highest threshold)."""
    precision, recall, thresholds = _curve(y_true, scores)
    b2 = beta * beta
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
    best = np.flatnonzero(f == f.max()).max()
    return OperatingPoint(float(thresholds[best]), float(recall[best]), float(precision[best]), RULE_F2)


def choose_threshold(
    y_true: np.ndarray,
    scores: np.ndarray,
    min_precision: float,
    fallback: Literal["f2", "error"] = "f2",
    bound: Bound = "point",
) -> OperatingPoint:
    point = recall_at_precision(y_true, scores, min_precision, bound)
    if point is not None:
        return point
    if fallback == "error":
        best = float(_curve(y_true, scores)[0].max())
        raise ThresholdError(
            f"no threshold reaches precision >= {min_precision} ({bound}; best precision {best:.3f}); "
            "lower train.min_precision, set train.threshold_bound: point or train.threshold_fallback: f2"
        )
    return max_f_beta(y_true, scores, beta=2.0)
