"""Reason codes: each score's decision-path attribution adds up to the score and names model features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.model import data as fdata
from pipelines.model.artifacts import ModelBundle
from pipelines.model.preprocessing import forest_pipeline
from pipelines.model.pyfunc_model import Calibration, CompiledPipeline, forest_score, reason_columns
from tests.support.feature_fixtures import make_features


@pytest.fixture(scope="module")
def compiled() -> tuple[CompiledPipeline, pd.DataFrame, ModelBundle]:
    features, _ = make_features(n_rows=1500, seed=5)
    x, y = fdata.to_model_input(features), fdata.labels(features)
    pipeline = forest_pipeline({"n_estimators": 15, "max_depth": 7, "min_samples_leaf": 5}, 4, 1).fit(x, y)
    bundle = ModelBundle(pipeline, 0.3, tuple(fdata.NUMERIC), tuple(fdata.CATEGORICAL),
                         Calibration("sigmoid", slope=1.0, intercept=-1.2))
    built = CompiledPipeline.build(bundle)
    assert built is not None
    return built, x, bundle


def test_contributions_add_up_to_the_forest_score(compiled: tuple[CompiledPipeline, pd.DataFrame, Any]) -> None:
    pipeline, x, bundle = compiled
    contributions = pipeline.contributions(x)
    assert contributions.shape == (len(x), len(fdata.FEATURES))
    assert list(pipeline.feature_names) == list(fdata.NUMERIC) + list(fdata.CATEGORICAL)
    np.testing.assert_allclose(pipeline.forest.bias + contributions.sum(axis=1), forest_score(bundle, x), atol=1e-12)
    # one-hot columns are credited to their source feature: every column has exactly one owner
    assert np.array_equal(pipeline.column_owner.sum(axis=1), np.ones(pipeline.column_owner.shape[0]))


def test_reason_columns_are_the_largest_positive_contributions(
        compiled: tuple[CompiledPipeline, pd.DataFrame, Any]) -> None:
    pipeline, x, _ = compiled
    reasons = reason_columns(pipeline, x, 3)
    assert list(reasons.columns) == ["reason_1", "reason_1_contribution", "reason_2", "reason_2_contribution",
                                     "reason_3", "reason_3_contribution"]
    contributions = pipeline.contributions(x)
    names = list(pipeline.feature_names)
    for row in range(0, len(x), 97):
        expected = sorted(((c, n) for c, n in zip(contributions[row], names, strict=True) if c > 0), reverse=True)[:3]
        got = [(reasons[f"reason_{i}_contribution"].iloc[row], reasons[f"reason_{i}"].iloc[row]) for i in (1, 2, 3)]
        for (c_exp, n_exp), (c_got, n_got) in zip(expected, got, strict=False):
            assert n_got == n_exp
            assert c_got == pytest.approx(c_exp, abs=1e-6)
        for c_got, n_got in got[len(expected):]:  # no positive contribution left: empty slot
            assert n_got is None
            assert c_got == 0.0
    first = reasons["reason_1_contribution"].to_numpy()
    assert np.all(first >= reasons["reason_2_contribution"].to_numpy())
    assert set(reasons["reason_1"].dropna()) <= set(fdata.FEATURES)


def test_reasons_do_not_depend_on_the_other_rows(compiled: tuple[CompiledPipeline, pd.DataFrame, Any]) -> None:
    pipeline, x, _ = compiled
    shuffled = x.sample(frac=1.0, random_state=2)
    together = reason_columns(pipeline, x, 2).loc[shuffled.index]
    pd.testing.assert_frame_equal(reason_columns(pipeline, shuffled, 2), together)
    alone = reason_columns(pipeline, x.iloc[[10]], 2)
    pd.testing.assert_frame_equal(alone, reason_columns(pipeline, x, 2).iloc[[10]])
