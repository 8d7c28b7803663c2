"""Operating threshold: highest recall at a precision floor, and the documented fallback."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.model.thresholds import (
    RULE_F2,
    RULE_FLOOR,
    ThresholdError,
    choose_threshold,
    max_f_beta,
    precision_lower_bound,
    recall_at_precision,
)
from pipelines.stats import wilson_interval

# Scores sorted high to low with their labels: flagging the top k gives
#   k:         1    2    3    4    5    6    7    8
#   precision: 1   1/2  2/3  2/4  3/5  3/6  3/7  4/8   recall (of 4): 1/4 1/4 2/4 2/4 3/4 3/4 3/4 1
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
LABELS = np.array([1, 0, 1, 0, 1, 0, 0, 1])


def test_highest_recall_with_precision_at_floor() -> None:
    point = recall_at_precision(LABELS, SCORES, 0.55)
    assert point is not None
    # top 5: precision 0.6 >= 0.55, recall 0.75; flagging all 8 reaches recall 1 at precision 0.5 < 0.55
    assert point.threshold == pytest.approx(0.5)
    assert point.recall == pytest.approx(0.75)
    assert point.precision == pytest.approx(0.6)
    assert point.rule == RULE_FLOOR


def test_floor_met_by_everything_flags_all() -> None:
    point = recall_at_precision(LABELS, SCORES, 0.5)
    assert point is not None
    assert point.threshold == pytest.approx(0.2)
    assert point.recall == pytest.approx(1.0)


def test_recall_ties_take_the_highest_threshold() -> None:
    # Top 5, 6 and 7 all reach recall 0.75; with a floor of 0.4, top 5 (precision 0.6) and top 6
    # (0.5) and top 7 (0.43) qualify: the highest threshold (fewest flags) is kept.
    point = recall_at_precision(LABELS[:7], SCORES[:7], 0.4)
    assert point is not None
    assert point.threshold == pytest.approx(0.5)
    assert point.precision == pytest.approx(0.6)


def test_flag_rule_is_score_at_least_threshold() -> None:
    point = recall_at_precision(LABELS, SCORES, 0.55)
    assert point is not None
    flags = point.threshold <= SCORES
    assert flags.sum() == 5
    assert LABELS[flags].mean() == pytest.approx(point.precision)


def test_unreachable_floor_returns_none() -> None:
    # the best precision with any flag is 1.0 (top 1), so ask for a floor above it using a
    # data set whose top score is a negative
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert recall_at_precision(labels, scores, 0.9) is None


def test_unreachable_floor_falls_back_to_max_f2() -> None:
    labels = np.array([0, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    point = choose_threshold(labels, scores, 0.9, fallback="f2")
    assert point.rule == RULE_F2
    assert point == max_f_beta(labels, scores, beta=2)
    # F2 of the candidates: top2 0.714, top4 0.833, top6 0.769 -> top 4
    assert point.threshold == pytest.approx(0.6)
    assert point.recall == pytest.approx(1.0)


def test_unreachable_floor_raises_when_asked() -> None:
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    with pytest.raises(ThresholdError, match=r"precision >= 0\.9"):
        choose_threshold(labels, scores, 0.9, fallback="error")


def test_no_positive_is_an_error() -> None:
    with pytest.raises(ThresholdError, match="no positive"):
        recall_at_precision(np.zeros(4, int), np.linspace(0, 1, 4), 0.2)


def test_wilson_lower_bound_keeps_a_margin_above_the_floor() -> None:
    rng = np.random.default_rng(4)
    scores = rng.random(4000)
    labels = (rng.random(4000) < 0.05 + 0.3 * scores).astype(int)
    point = choose_threshold(labels, scores, 0.25)
    bounded = choose_threshold(labels, scores, 0.25, bound="wilson_lower")
    assert point.rule == bounded.rule == RULE_FLOOR
    assert bounded.threshold > point.threshold  # fewer flags ...
    assert bounded.recall < point.recall
    flag = scores >= bounded.threshold
    tp, n = int((flag & (labels == 1)).sum()), int(flag.sum())
    assert bounded.precision == pytest.approx(tp / n)
    assert wilson_interval(tp, n)[0] >= 0.25  # ... so that the 95% lower bound, not the estimate, is at the floor
    # the highest-recall such threshold: every lower one that catches more is under the floor by its bound
    order = np.argsort(-scores)
    caught = np.cumsum(labels[order])
    for k in range(n, 4000, 50):
        if caught[k] > tp:
            assert wilson_interval(int(caught[k]), k + 1)[0] < 0.25


def test_lower_bound_matches_the_stats_module() -> None:
    precision = np.array([0.5, 0.25, 1.0, 0.0])
    recall = np.array([0.5, 0.75, 0.25, 0.0])
    lower = precision_lower_bound(precision, recall, 40)  # flagged = 20, 120, 10 stays; none
    for value, (tp, n) in zip(lower[:3], [(20, 40), (30, 120), (10, 10)], strict=True):
        assert value == pytest.approx(wilson_interval(tp, n)[0])
    assert lower[3] == 0.0
