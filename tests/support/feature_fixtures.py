"""Synthetic ML feature mart + matching truth, for developing and testing train/evaluate.

The frame has exactly `contracts.FEATURE_SCHEMA`; the label is drawn from a known logistic
model (the same shape as the simulator's planted effects: age and stay cost strongest), and
the truth table (`contracts.TRUTH_STAY_COLUMNS`) carries that probability per episode. A few
truth rows are extra stays of a transfer chain (same `episode_id`, another `stay_id`) and a few
are planned sessions that never reach the feature mart, as in the real `generate` output.

Run as a script to write a fixture into a project root:
    python -m tests.support.feature_fixtures /tmp/demo --rows 30000
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from pipelines import contracts

FEATURES_FILE = "ml_readmission_features.parquet"
DATA_START = date(2022, 1, 1)
DATA_END = date(2024, 11, 30)  # the mart stops 30 days before the data end (censoring)

_POVERTY = {"93": 27.6, "95": 17.0, "94": 16.6, "75": 15.4, "91": 13.2, "92": 11.9, "77": 11.7, "78": 9.7}
_DIAGNOSES = ("COPD", "HEART_FAILURE", "DIABETES", "CKD", "CANCER", "STROKE", "PNEUMONIA", "OTHER")
_DIAGNOSIS_EFFECT = {"HEART_FAILURE": 0.25, "COPD": 0.2, "CKD": 0.15, "CANCER": 0.1}
_DESTINATIONS = ("home", "transfer_mco", "transfer_ssr", "other")


def _lace(los: np.ndarray, emergency: np.ndarray, charlson: np.ndarray, ed6m: np.ndarray) -> np.ndarray:
    l_pts = np.select([los < 1, los < 4, los < 7, los < 14], [0, los, 4, 5], 7)
    c_pts = np.where(charlson >= 4, 5, charlson)
    e_pts = np.minimum(ed6m, 4)
    lace: np.ndarray = (l_pts + 3 * emergency + c_pts + e_pts).astype(np.int32)
    return lace


def make_features(
    n_rows: int = 4000,
    seed: int = 7,
    start: date = DATA_START,
    end: date = DATA_END,
    intercept: float = -3.0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (features, truth): one feature row per index stay, truth rows per stay."""
    rng = np.random.default_rng(seed)
    n = n_rows
    span = (end - start).days
    discharge = np.datetime64(start) + rng.integers(0, span + 1, n).astype("timedelta64[D]")

    age = np.clip(rng.normal(66, 17, n), 18, 102).astype(np.int32)
    sex = rng.integers(1, 3, n).astype(np.int32)
    departments = np.array(sorted(_POVERTY))
    department = departments[rng.integers(0, len(departments), n)]
    deprivation = np.array([_POVERTY[d] for d in department])
    diagnosis = np.array(_DIAGNOSES)[rng.choice(len(_DIAGNOSES), n, p=[0.14, 0.14, 0.1, 0.08, 0.1, 0.08, 0.12, 0.24])]
    emergency = (rng.random(n) < 0.55).astype(np.int32)
    charlson = np.minimum(rng.poisson(0.4 + age / 60.0), 12).astype(np.int32)
    los = np.maximum(0, rng.gamma(1.6, 3.5, n) + 0.04 * (age - 60)).round().astype(np.int32)
    stay_cost = np.round(np.exp(rng.normal(np.log(2500 + 900 * los), 0.45)), 2)
    prior_12m = rng.poisson(0.35 + 0.25 * charlson).astype(np.int32)
    prior_6m = rng.binomial(prior_12m, 0.55).astype(np.int32)
    prior_ed_12m = rng.binomial(prior_12m, 0.5).astype(np.int32)
    prior_ed_6m = np.minimum(prior_ed_12m, prior_6m).astype(np.int32)
    has_prior = (prior_12m > 0) | (rng.random(n) < 0.15)
    days_since = np.where(has_prior, rng.integers(2, 700, n), -1).astype(np.int32)
    atc = rng.poisson(1.0 + 0.5 * charlson).astype(np.int32)
    hospital_category = np.array(sorted(contracts.HOSPITAL_CATEGORIES.values()))[rng.integers(0, 4, n)]
    destination = np.array(_DESTINATIONS)[rng.choice(4, n, p=[0.8, 0.06, 0.1, 0.04])]
    lace = _lace(los, emergency, charlson, prior_ed_6m)

    logit = (
        intercept
        + 0.42 * (age - 65) / 10
        + 0.85 * np.log(stay_cost / 4000)
        + 0.016 * (deprivation - 15.5)
        + 0.12 * np.minimum(prior_12m, 5)
        + 0.20 * emergency
        + 0.08 * np.minimum(charlson, 6)
        + 0.10 * (sex == 1)
        + np.array([_DIAGNOSIS_EFFECT.get(d, 0.0) for d in diagnosis])
    )
    probability = 1 / (1 + np.exp(-logit))
    label = (rng.random(n) < probability).astype(np.int32)

    hospital = np.array([f"{d}0{i:07d}" for d in departments for i in range(3)])
    stay_id = np.array([f"{h}-{i}" for i, h in enumerate(hospital[rng.integers(0, len(hospital), n)])])

    features = pl.DataFrame(
        {
            contracts.FEATURE_KEY: stay_id,
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
            "stay_cost": stay_cost,
            "prior_atc_classes_90d": atc,
            "lace_score": lace,
            "department": department,
            "diagnosis_group": diagnosis,
            "hospital_category": hospital_category,
            "discharge_destination": destination,
            contracts.FEATURE_LABEL: label,
        }
    ).cast(contracts.FEATURE_SCHEMA)  # type: ignore[arg-type]
    features = features.select(list(contracts.FEATURE_SCHEMA))

    # Truth: the episode's own row, a second stay for ~5% (transfer chains), planned sessions.
    chained = rng.random(n) < 0.05
    n_planned = max(1, n // 50)
    truth = pl.concat(
        [
            pl.DataFrame({"stay_id": stay_id, "episode_id": stay_id, "true_probability": probability,
                          "readmitted_30d": label.astype(bool), "planned": np.zeros(n, bool)}),
            pl.DataFrame({"stay_id": [f"{s}-T" for s in stay_id[chained]], "episode_id": stay_id[chained],
                          "true_probability": probability[chained], "readmitted_30d": label[chained].astype(bool),
                          "planned": np.zeros(int(chained.sum()), bool)}),
            pl.DataFrame({"stay_id": [f"PLANNED-{i}" for i in range(n_planned)],
                          "episode_id": [f"PLANNED-{i}" for i in range(n_planned)],
                          "true_probability": np.full(n_planned, 0.05), "readmitted_30d": np.zeros(n_planned, bool),
                          "planned": np.ones(n_planned, bool)}),
        ]
    )
    # The columns this fixture does not model (return reasons, stay kinds...) are null.
    truth = truth.select(
        [pl.col(c).cast(t) if c in truth.columns else pl.lit(None, dtype=t).alias(c)
         for c, t in contracts.TRUTH_STAY_COLUMNS.items()]
    )
    # Shuffle so nothing downstream can rely on the file's row order.
    order = rng.permutation(features.height)
    return features[order.tolist()], truth.sample(fraction=1.0, shuffle=True, seed=seed)


def write_fixture(root: Path, n_rows: int = 4000, seed: int = 7) -> tuple[Path, Path]:
    """Write data/features/<mart>.parquet and data/truth/stay_outcomes.parquet under root."""
    features, truth = make_features(n_rows=n_rows, seed=seed)
    feat_path = root / "data" / "features" / FEATURES_FILE
    truth_path = root / "data" / "truth" / contracts.TRUTH_STAYS_FILE
    feat_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    features.write_parquet(feat_path)
    truth.write_parquet(truth_path)
    return feat_path, truth_path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for path in write_fixture(args.root, args.rows, args.seed):
        print(path)
