"""Intervals and ratios shared by the warehouse figures (warehouse.json) and the dashboard.

The Wilson interval, the independent-groups risk ratio and Pearson's r come from scipy.stats; the
ratio of a sub-population to the whole it belongs to has no scipy counterpart and stays here. The
warehouse's own Wilson interval (a dbt macro in SQL) is separate and unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy.special import ndtr
from scipy.stats import binomtest, pearsonr
from scipy.stats.contingency import relative_risk

Z_95 = 1.959963984540054


def _confidence(z: float) -> float:
    """The two-sided confidence level whose normal quantile is z (0.95 for Z_95)."""
    return float(2.0 * ndtr(z) - 1.0)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN) without trials."""
    if trials <= 0:
        return (math.nan, math.nan)
    ci = binomtest(successes, trials).proportion_ci(confidence_level=_confidence(z), method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))


def ratio_to_total(x: int, n: int, x_total: int, n_total: int, z: float = Z_95) -> tuple[float, float, float]:
    """Rate ratio of a sub-population (x/n) to the whole it belongs to (x_total/n_total), with a
    delta-method CI on the log scale accounting for the overlap:
    Var(log R) = (1-p)/(n p) + (1-P)/(N P) - 2 (1-p)/(N P).

    Kept by hand: scipy's relative_risk (Katz) assumes two independent groups, and the
    sub-population's stays are part of the total, so its interval would be too wide."""
    if n <= 0 or x <= 0 or n_total <= 0 or x_total <= 0:
        return (math.nan, math.nan, math.nan)
    p, big_p = x / n, x_total / n_total
    ratio = p / big_p
    var = (1 - p) / (n * p) + (1 - big_p) / (n_total * big_p) - 2 * (1 - p) / (n_total * big_p)
    half = z * math.sqrt(max(var, 0.0))
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def ratio_independent(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> tuple[float, float, float]:
    """Risk ratio of two independent groups with the Katz log CI (scipy's relative_risk).

    As before: ZeroDivisionError when a group is empty or the second has no events; (0, 0, NaN)
    when the first has none."""
    if n1 == 0 or n2 == 0 or x2 == 0:
        raise ZeroDivisionError(f"risk ratio {x1}/{n1} over {x2}/{n2} is undefined")
    result = relative_risk(exposed_cases=x1, exposed_total=n1, control_cases=x2, control_total=n2)
    ci = result.confidence_interval(confidence_level=_confidence(z))
    return float(result.relative_risk), float(ci.low), float(ci.high)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation (NaN with fewer than 3 pairs or no spread)."""
    if len(xs) < 3 or len(xs) != len(ys) or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(pearsonr(xs, ys).statistic)


def safe_div(num: float, den: float) -> float:
    return num / den if den else math.nan
