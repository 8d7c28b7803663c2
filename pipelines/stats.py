"""Intervals and ratios shared by the warehouse figures (warehouse.json) and the dashboard."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN) without trials."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = p + z * z / (2 * trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom))


def ratio_to_total(x: int, n: int, x_total: int, n_total: int, z: float = Z_95) -> tuple[float, float, float]:
    """Rate ratio of a sub-population (x/n) to the whole it belongs to (x_total/n_total), with a
    delta-method CI on the log scale accounting for the overlap:
    Var(log R) = (1-p)/(n p) + (1-P)/(N P) - 2 (1-p)/(N P)."""
    if n <= 0 or x <= 0 or n_total <= 0 or x_total <= 0:
        return (math.nan, math.nan, math.nan)
    p, big_p = x / n, x_total / n_total
    ratio = p / big_p
    var = (1 - p) / (n * p) + (1 - big_p) / (n_total * big_p) - 2 * (1 - p) / (n_total * big_p)
    half = z * math.sqrt(max(var, 0.0))
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def ratio_independent(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> tuple[float, float, float]:
    """Risk ratio of two independent groups with the Katz log CI."""
    p1, p2 = x1 / n1, x2 / n2
    ratio = p1 / p2
    half = z * math.sqrt((1 - p1) / x1 + (1 - p2) / x2) if x1 and x2 else math.inf
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation (NaN with fewer than 3 pairs or no spread)."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    sxx = sum((a - mx) ** 2 for a in xs)
    syy = sum((b - my) ** 2 for b in ys)
    if sxx <= 0 or syy <= 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def safe_div(num: float, den: float) -> float:
    return num / den if den else math.nan
