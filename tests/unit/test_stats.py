"""pipelines/stats.py on scipy.stats: the same figures as the closed-form formulas it replaced."""

from __future__ import annotations

import math
import warnings

import pytest

from pipelines.stats import Z_95, pearson, ratio_independent, ratio_to_total, wilson_interval

TOL = 1e-12


def wilson_by_formula(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The score interval written out (Wilson 1927), as pipelines/stats.py computed it before scipy."""
    p = k / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)


def katz_by_formula(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> tuple[float, float, float]:
    """Katz's log interval of a risk ratio: Var(log RR) = (1-p1)/x1 + (1-p2)/x2."""
    p1, p2 = x1 / n1, x2 / n2
    ratio = p1 / p2
    half = z * math.sqrt((1 - p1) / x1 + (1 - p2) / x2) if x1 else math.inf
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def pearson_by_formula(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    return sxy / math.sqrt(sum((a - mx) ** 2 for a in xs) * sum((b - my) ** 2 for b in ys))


@pytest.mark.parametrize(("k", "n"), [(2, 10), (0, 20), (20, 20), (1, 1), (0, 1), (1, 2), (37, 250), (999, 1000),
                                      (1, 1_000_000), (123_456, 1_000_000)])
def test_wilson_equals_the_score_formula(k: int, n: int) -> None:
    lo, hi = wilson_interval(k, n)
    ref_lo, ref_hi = wilson_by_formula(k, n)
    assert abs(lo - ref_lo) < TOL
    assert abs(hi - ref_hi) < TOL
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edges() -> None:
    assert wilson_interval(2, 10) == pytest.approx((0.0567, 0.5098), abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0  # exactly, not a rounding residue
    assert wilson_interval(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert all(math.isnan(v) for v in wilson_interval(3, -1))
    # a wider z gives a wider interval (the level follows z)
    assert wilson_interval(30, 100, z=2.576)[0] < wilson_interval(30, 100)[0]
    assert abs(wilson_interval(30, 100, z=2.576)[0] - wilson_by_formula(30, 100, z=2.576)[0]) < TOL
    with pytest.raises(ValueError, match="k"):  # more successes than trials is refused, not an interval
        wilson_interval(11, 10)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(30, 100, 10, 100), (100, 1000, 1000, 10000), (1, 5, 1, 5),
                                                    (5, 5, 3, 7), (10, 75, 12, 225), (1, 1000, 999, 1000),
                                                    (0, 10, 3, 10)])
def test_ratio_independent_equals_katz(x1: int, n1: int, x2: int, n2: int) -> None:
    got, ref = ratio_independent(x1, n1, x2, n2), katz_by_formula(x1, n1, x2, n2)
    for a, b in zip(got, ref, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=TOL, abs=TOL)
    if x1:
        assert got[1] < got[0] < got[2]


def test_ratio_independent_edges() -> None:
    assert ratio_independent(10, 75, 12, 225)[1:] == pytest.approx((1.1261564003469628, 5.549850800541033), rel=1e-12)
    ratio, lo, hi = ratio_independent(0, 10, 3, 10)  # no event in the first group: 0, lower bound 0, no upper
    assert (ratio, lo) == (0.0, 0.0)
    assert math.isnan(hi)
    for args in ((3, 0, 1, 10), (3, 10, 1, 0), (3, 10, 0, 10)):  # undefined ratios raise, as before
        with pytest.raises(ZeroDivisionError):
            ratio_independent(*args)


def test_ratio_to_total_is_narrower_than_independent_groups() -> None:
    # Kept by hand (a sub-population of the total is not independent of it): the overlap narrows the CI.
    ratio, lo, hi = ratio_to_total(100, 1000, 1000, 10000)
    assert ratio == pytest.approx(1.0)
    _, ilo, ihi = ratio_independent(100, 1000, 1000, 10000)
    assert ilo < lo < 1 < hi < ihi
    assert all(math.isnan(v) for v in ratio_to_total(0, 10, 5, 100))


@pytest.mark.parametrize(("xs", "ys"), [
    ([1.0, 2.0, 3.0], [2.0, 4.1, 5.9]),
    ([0.276, 0.17, 0.166, 0.154, 0.132, 0.119, 0.117, 0.097], [0.19, 0.15, 0.16, 0.14, 0.13, 0.12, 0.13, 0.11]),
    ([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]),
    ([1e6, 1e6 + 1, 1e6 + 3], [5.0, -1.0, 2.0]),
])
def test_pearson_equals_the_formula(xs: list[float], ys: list[float]) -> None:
    assert abs(pearson(xs, ys) - pearson_by_formula(xs, ys)) < TOL


def test_pearson_edges() -> None:
    assert pearson([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0, abs=TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spread is NaN, without scipy's constant-input warning
        for xs, ys in (([1.0, 2.0], [1.0, 2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0] * 3),
                       ([1.0, 2.0, 3.0], [1.0, 2.0])):
            assert math.isnan(pearson(xs, ys))
