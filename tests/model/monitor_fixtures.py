"""Synthetic feature-mart frames and a tiny trained model bundle for the monitor tests.

`make_frame` draws rows with exactly `contracts.FEATURE_SCHEMA`; `plant_drift` shifts the
columns the simulator's drift scenario moves (older patients, cost inflation, a private clinic
taking a share of stays, more coded comorbidities) and leaves the others untouched.
`write_model` fits a small scikit-learn pipeline and writes models/model.joblib +
models/model_meta.json in the train stage's format, so `run_monitor` can run without MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from pipelines import contracts
from pipelines.model.artifacts import META_FILE, MODEL_FILE, ModelBundle, ModelMeta, write_bundle, write_meta

POVERTY = {"93": 27.6, "95": 17.0, "94": 16.6, "75": 15.4, "91": 13.2, "92": 11.9, "77": 11.7, "78": 9.7}
DIAGNOSES = ("COPD", "HEART_FAILURE", "DIABETES", "CKD", "CANCER", "STROKE", "PNEUMONIA", "OTHER")
CATEGORIES = tuple(sorted(contracts.HOSPITAL_CATEGORIES.values()))
DESTINATIONS = ("home", "transfer_mco", "transfer_ssr", "other")
NUMERIC = list(contracts.NUMERIC_FEATURES)
CATEGORICAL = list(contracts.CATEGORICAL_FEATURES)


def make_frame(n: int, seed: int, start: date = date(2022, 1, 1), end: date = date(2024, 11, 30),
               prefix: str = "S") -> pl.DataFrame:
    """`n` index stays discharged uniformly in [start, end], label from a known logistic model."""
    rng = np.random.default_rng(seed)
    span = (end - start).days
    discharge = np.datetime64(start) + rng.integers(0, span + 1, n).astype("timedelta64[D]")
    age = np.clip(rng.normal(66, 17, n), 18, 102).astype(np.int32)
    sex = rng.integers(1, 3, n).astype(np.int32)
    departments = np.array(sorted(POVERTY))
    department = departments[rng.integers(0, len(departments), n)]
    deprivation = np.array([POVERTY[d] for d in department])
    emergency = (rng.random(n) < 0.55).astype(np.int32)
    charlson = np.minimum(rng.poisson(0.4 + age / 60.0), 12).astype(np.int32)
    los = np.maximum(0, rng.gamma(1.6, 3.5, n) + 0.04 * (age - 60)).round().astype(np.int32)
    cost = np.round(np.exp(rng.normal(np.log(2500 + 900 * los), 0.45)), 2)
    prior_12m = rng.poisson(0.35 + 0.25 * charlson).astype(np.int32)
    prior_6m = rng.binomial(prior_12m, 0.55).astype(np.int32)
    prior_ed_12m = rng.binomial(prior_12m, 0.5).astype(np.int32)
    prior_ed_6m = np.minimum(prior_ed_12m, prior_6m).astype(np.int32)
    days_since = np.where(prior_12m > 0, rng.integers(2, 700, n), -1)
    logit = (-2.2 + 0.42 * (age - 65) / 10 + 0.85 * np.log(cost / 4000) + 0.016 * (deprivation - 15.5)
             + 0.12 * np.minimum(prior_12m, 5) + 0.2 * emergency + 0.08 * np.minimum(charlson, 6) + 0.1 * (sex == 1))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    frame = pl.DataFrame({
        contracts.FEATURE_KEY: [f"{prefix}{i:07d}" for i in range(n)],
        contracts.FEATURE_SPLIT_DATE: discharge,
        "age": age,
        "sex": sex,
        "deprivation_rate": deprivation,
        "length_of_stay": los,
        "emergency_admission": emergency,
        "charlson_score": charlson,
        "prior_stays_6m": prior_6m,
        "prior_stays_12m": prior_12m,
        "prior_emergency_6m": prior_ed_6m,
        "prior_emergency_12m": prior_ed_12m,
        "days_since_last_discharge": pl.Series(days_since).set(pl.Series(days_since < 0), None),
        "stay_cost": cost,
        "prior_atc_classes_90d": rng.poisson(1.0 + 0.5 * charlson).astype(np.int32),
        "lace_score": (np.minimum(los, 7) + 3 * emergency + np.minimum(charlson, 5) + np.minimum(prior_ed_6m, 4)),
        "department": department,
        "diagnosis_group": np.array(DIAGNOSES)[rng.integers(0, len(DIAGNOSES), n)],
        "hospital_category": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)],
        "discharge_destination": np.array(DESTINATIONS)[rng.choice(4, n, p=[0.8, 0.06, 0.1, 0.04])],
        contracts.FEATURE_LABEL: label,
    })
    return frame.cast(contracts.FEATURE_SCHEMA).select(list(contracts.FEATURE_SCHEMA))  # type: ignore[arg-type]


@dataclass(frozen=True)
class PlantedDrift:
    age_years: int = 8
    cost_factor: float = 1.3
    private_clinic_share: float = 0.6  # share of stays moved to 'Private clinic'
    extra_comorbidity: float = 0.7  # chance a stay gains one Charlson point


DRIFTED = ("age", "stay_cost", "hospital_category", "charlson_score")


def plant_drift(frame: pl.DataFrame, seed: int, drift: PlantedDrift = PlantedDrift()) -> pl.DataFrame:
    """Shift the DRIFTED columns; department, deprivation_rate, sex and the rest stay as drawn."""
    rng = np.random.default_rng(seed)
    n = frame.height
    moved = rng.random(n) < drift.private_clinic_share
    return frame.with_columns(
        (pl.col("age") + drift.age_years).clip(upper_bound=105).cast(pl.Int32),
        (pl.col("stay_cost") * drift.cost_factor).round(2),
        pl.when(pl.Series(moved)).then(pl.lit("Private clinic")).otherwise(pl.col("hospital_category"))
        .alias("hospital_category"),
        (pl.col("charlson_score") + pl.Series((rng.random(n) < drift.extra_comorbidity).astype(np.int32)))
        .cast(pl.Int32),
    )


def write_mart(root: Path, frame: pl.DataFrame) -> Path:
    path = root / "data" / "features" / "ml_readmission_features.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def fit_pipeline(frame: pl.DataFrame, seed: int = 0) -> Pipeline:
    pre = ColumnTransformer([
        ("num", SimpleImputer(strategy="median"), NUMERIC),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
    ])
    model = Pipeline([("pre", pre), ("rf", RandomForestClassifier(
        n_estimators=30, min_samples_leaf=20, max_depth=8, class_weight="balanced", random_state=seed, n_jobs=1))])
    x = frame.select([pl.col(c).cast(pl.Float64) for c in NUMERIC] + [pl.col(c) for c in CATEGORICAL]).to_pandas()
    model.fit(x, frame[contracts.FEATURE_LABEL].to_numpy())
    return model


def write_model(root: Path, train: pl.DataFrame, train_end: date, valid_end: date,
                threshold: float = 0.5, version: str = "1") -> None:
    """models/model.joblib (bundle format 1) and models/model_meta.json, like the train stage."""
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_bundle(models / MODEL_FILE, ModelBundle(fit_pipeline(train), threshold, tuple(NUMERIC), tuple(CATEGORICAL)))
    write_meta(models / META_FILE, ModelMeta(
        model_name="test-model", version=version, model_uri=f"models:/test-model/{version}",
        experiment="test", threshold=threshold, threshold_rule="min_precision", min_precision=0.25,
        numeric_features=tuple(NUMERIC), categorical_features=tuple(CATEGORICAL), train_end=train_end,
        valid_end=valid_end, best_params={}, seed=0, features_md5="md5"))
