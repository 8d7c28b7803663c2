"""Metrics shared by train and evaluate (stages never import each other)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, fbeta_score, roc_auc_score

DIGITS = 6  # metrics files round here: same inputs, same bytes


def r6(value: float) -> float:
    return round(float(value), DIGITS)


def probability_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, calibration and operating-point metrics of one score on one window."""
    flag = (p >= threshold).astype(int)
    tp = int(((flag == 1) & (y == 1)).sum())
    return {
        "recall": r6(tp / max(int(y.sum()), 1)),
        "precision": r6(tp / max(int(flag.sum()), 1)),
        "f2": r6(fbeta_score(y, flag, beta=2, zero_division=0)),
        "pr_auc": r6(average_precision_score(y, p)),
        "roc_auc": r6(roc_auc_score(y, p)),
        "brier": r6(brier_score_loss(y, p)),
        "flagged_share": r6(flag.mean()),
        "prevalence": r6(y.mean()),
        "n": int(y.size),
    }
