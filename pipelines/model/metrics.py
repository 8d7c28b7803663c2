"""Metrics shared by train, evaluate and promote (stages never import each other)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, fbeta_score, roc_auc_score

from pipelines.metrics_io import DIGITS, rounded, rounded_or_none
from pipelines.model.calibration import calibration_slope_intercept


def flag_metrics(y: np.ndarray, flag: np.ndarray) -> dict[str, Any]:
    """Recall, precision and flagged share of a 0/1 flag, with the counts they rest on."""
    tp = int(((flag == 1) & (y == 1)).sum())
    flagged = int(flag.sum())
    return {
        "recall": rounded(tp / max(int(y.sum()), 1), DIGITS),
        "precision": rounded(tp / max(flagged, 1), DIGITS),
        "flagged_share": rounded(flag.mean(), DIGITS),
        "tp": tp,
        "flagged": flagged,
        "n": int(y.size),
    }


def f2(y: np.ndarray, flag: np.ndarray) -> float:
    return rounded(fbeta_score(y, flag, beta=2, zero_division=0), DIGITS)


# What tells a calibrated probability from a mere ranking score (reported before and after calibration).
CALIBRATION_KEYS = ("brier", "calibration_slope", "calibration_intercept")


def calibration_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Brier score, calibration slope and intercept of one score on one window."""
    full = probability_metrics(y, p, 0.5)
    return {k: full[k] for k in CALIBRATION_KEYS}


def probability_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Ranking, calibration and operating-point metrics of one score on one window."""
    flag = (p >= threshold).astype(int)
    at = flag_metrics(y, flag)
    slope, intercept = calibration_slope_intercept(y, p)
    return {
        "recall": at["recall"],
        "precision": at["precision"],
        "f2": f2(y, flag),
        "pr_auc": rounded(average_precision_score(y, p), DIGITS),
        "roc_auc": rounded(roc_auc_score(y, p), DIGITS),
        "brier": rounded(brier_score_loss(y, p), DIGITS),
        "calibration_slope": rounded_or_none(slope, DIGITS),
        "calibration_intercept": rounded_or_none(intercept, DIGITS),
        "flagged_share": at["flagged_share"],
        "prevalence": rounded(y.mean(), DIGITS),
        "n": at["n"],
    }
