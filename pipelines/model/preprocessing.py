"""sklearn pipelines: the Random Forest and the logistic-regression baseline.

Only the contract's feature columns are selected (ColumnTransformer, remainder dropped), so a
key, a date or any stray column in the input never reaches an estimator. The fitted pipelines
hold sklearn objects only: they unpickle without this package (the served MLflow model relies
on that).
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipelines.model.data import CATEGORICAL, NUMERIC


def _one_hot() -> OneHotEncoder:
    # Unknown categories (a new department code, a new diagnosis group) encode as all zeros;
    # a missing value is its own category.
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=float)


def forest_pipeline(params: dict[str, Any], seed: int, n_jobs: int) -> Pipeline:
    """Numerics passed through (the forest splits on NaN natively), categoricals one-hot."""
    prep = ColumnTransformer(
        [("num", "passthrough", NUMERIC), ("cat", _one_hot(), CATEGORICAL)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    forest = RandomForestClassifier(class_weight="balanced", random_state=seed, n_jobs=n_jobs, **params)
    return Pipeline([("prep", prep), ("rf", forest)])


def logreg_pipeline(c: float, max_iter: int) -> Pipeline:
    """Baseline: median imputation (+ missing indicators) and scaling, one-hot categoricals."""
    numeric = Pipeline(
        [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
    )
    prep = ColumnTransformer(
        [("num", numeric, NUMERIC), ("cat", _one_hot(), CATEGORICAL)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("prep", prep), ("logreg", LogisticRegression(C=c, max_iter=max_iter))])


def set_forest_jobs(pipeline: Pipeline, n_jobs: int) -> Pipeline:
    """Threads used by predict (1 for serving: parallel predict slows single rows)."""
    pipeline.named_steps["rf"].set_params(n_jobs=n_jobs)
    return pipeline
