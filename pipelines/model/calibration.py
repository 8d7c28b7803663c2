"""Probability calibration: fitting the served map and measuring how well a score is calibrated.

The map itself (`Calibration`, applied inside the served pyfunc) lives in pyfunc_model.py, which
may not import the package; this module fits it (train, on the validation window) and gives the
figures every stage reports for a probability: calibration slope and intercept (Cox 1958: the
logistic regression of the label on logit(p); slope 1 and intercept 0 when calibrated; a slope
below 1 means predictions too extreme) and calibration-in-the-large (the intercept with the
slope held at 1: 0 when the mean prediction matches the observed rate).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from pipelines.model.pyfunc_model import Calibration, logit

Method = Literal["sigmoid", "isotonic", "none"]


def fit_calibration(method: Method, y: np.ndarray, score: np.ndarray) -> Calibration:
    """The map from `score` to the probability of y = 1, fitted on (y, score)."""
    y = np.asarray(y).astype(int)
    if method == "none":
        return Calibration()
    if len(set(y.tolist())) != 2:
        raise ValueError("calibration needs both outcomes in the fitting window")
    if method == "sigmoid":
        # unpenalised (C=inf): a two-parameter fit on thousands of rows needs no shrinkage
        fitted = LogisticRegression(C=np.inf).fit(logit(score)[:, None], y)
        return Calibration("sigmoid", slope=float(fitted.coef_[0, 0]), intercept=float(fitted.intercept_[0]))
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(np.asarray(score, dtype=float), y)
    return Calibration("isotonic", x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the logistic recalibration y ~ intercept + slope x logit(p)."""
    y = np.asarray(y).astype(int)
    if len(set(y.tolist())) != 2:
        return float("nan"), float("nan")
    fitted = LogisticRegression(C=np.inf).fit(logit(p)[:, None], y)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def calibration_in_the_large(y: np.ndarray, p: np.ndarray) -> float:
    """The a solving sum(y) = sum(expit(a + logit(p))): the log-odds shift that matches the rate."""
    y = np.asarray(y, dtype=float)
    if not 0 < y.sum() < y.size:
        return float("nan")
    offset = logit(p)
    return float(brentq(lambda a: float(expit(a + offset).sum() - y.sum()), -20.0, 20.0, xtol=1e-10))
