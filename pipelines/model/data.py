"""Loading the feature mart, the leakage guard and the temporal split.

The feature mart must hold exactly `contracts.FEATURE_SCHEMA`. Anything else is refused by
`check_no_leakage` before a model sees it: an extra column could carry information from after
the index discharge (a readmission date, a later cost...), and no heuristic can tell a safe
extra column from a leaking one, so the contract is the allow-list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import polars as pl

from pipelines import contracts
from pipelines.config import Paths
from pipelines.errors import MissingInputError, PipelineInputError

FEATURES_FILE = "ml_readmission_features.parquet"
NUMERIC = list(contracts.NUMERIC_FEATURES)
CATEGORICAL = list(contracts.CATEGORICAL_FEATURES)
FEATURES = NUMERIC + CATEGORICAL  # what the model sees, in this order
NULLABLE_NUMERIC = ("days_since_last_discharge",)  # null when no earlier stay (contracts)
KEY = contracts.FEATURE_KEY
DATE = contracts.FEATURE_SPLIT_DATE
LABEL = contracts.FEATURE_LABEL


class LeakageError(PipelineInputError, ValueError):
    """A column that is not in the feature contract (possibly known only after discharge)."""


class FeatureContractError(PipelineInputError, ValueError):
    """The feature mart does not match contracts.FEATURE_SCHEMA (missing column, bad type, bad value)."""


class SplitError(PipelineInputError, ValueError):
    """The temporal split is empty, overlapping or lacks one of the classes."""


def features_path(paths: Paths) -> Path:
    return paths.features / FEATURES_FILE


def file_md5(path: Path) -> str:
    """md5 of the file's bytes: the hash DVC records for it."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_temporal(dtype: pl.DataType) -> bool:
    return dtype.is_temporal()


def check_no_leakage(frame: pl.DataFrame) -> None:
    """Fail, naming the column, on any column outside the feature contract.

    Date/datetime columns other than the split date are reported as look-ahead risks (a date
    after the index discharge is exactly the kind of column that leaks the label); any other
    extra column is refused as not part of the contract.
    """
    schema = frame.schema
    for name, dtype in schema.items():
        if name == DATE:
            if not _is_temporal(dtype):
                raise FeatureContractError(f"column '{DATE}' must be a date, got {dtype}")
            continue
        if name in contracts.FEATURE_SCHEMA and not _is_temporal(dtype):
            continue
        if _is_temporal(dtype) or name.endswith("_date"):
            detail = ""
            if _is_temporal(dtype) and DATE in schema:
                later = frame.filter(pl.col(name).cast(pl.Date) > pl.col(DATE)).height
                detail = f" ({later} rows dated after {DATE})" if later else ""
            raise LeakageError(
                f"leakage guard: column '{name}' ({dtype}) is a date other than '{DATE}'{detail}; "
                "features must be known at discharge and only the contract's columns are allowed"
            )
        raise LeakageError(
            f"leakage guard: column '{name}' ({dtype}) is not in contracts.FEATURE_SCHEMA; "
            "only the contract's columns may reach the model"
        )


def _same_family(actual: pl.DataType, expected: pl.DataType) -> bool:
    if expected.is_numeric():
        return actual.is_numeric() or actual == pl.Boolean()
    return actual == expected or (expected == pl.String() and actual in (pl.Categorical(), pl.Enum))


def validate_features(frame: pl.DataFrame) -> pl.DataFrame:
    """Check the contract and return the frame with the contract's exact dtypes and column order."""
    check_no_leakage(frame)
    missing = [c for c in contracts.FEATURE_SCHEMA if c not in frame.columns]
    if missing:
        raise FeatureContractError(f"feature mart lacks contract column(s): {', '.join(missing)}")
    for name, expected in contracts.FEATURE_SCHEMA.items():
        actual = frame.schema[name]
        if not _same_family(actual, expected):
            raise FeatureContractError(f"column '{name}': expected {expected}, got {actual}")
    frame = frame.select(list(contracts.FEATURE_SCHEMA)).cast(contracts.FEATURE_SCHEMA)  # type: ignore[arg-type]
    for name in (KEY, DATE, LABEL):
        nulls = frame[name].null_count()
        if nulls:
            raise FeatureContractError(f"column '{name}' has {nulls} null value(s)")
    bad_labels = frame.filter(~pl.col(LABEL).is_in([0, 1])).height
    if bad_labels:
        raise FeatureContractError(f"column '{LABEL}' must be 0/1 ({bad_labels} other values)")
    duplicates = frame.height - frame[KEY].n_unique()
    if duplicates:
        raise FeatureContractError(f"column '{KEY}' is not unique ({duplicates} duplicate rows)")
    return frame


def load_features(paths: Paths) -> pl.DataFrame:
    path = features_path(paths)
    if not path.exists():
        raise MissingInputError(f"{path}: feature mart not found (run the features stage first)")
    return validate_features(pl.read_parquet(path))


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    gap_days: int = 0  # label window kept clear before the validation and test windows
    gap_dropped: tuple[int, int] = (0, 0)  # index stays dropped before valid start / before test start

    def sizes(self) -> dict[str, int]:
        return {"train": self.train.height, "valid": self.valid.height, "test": self.test.height}

    def gap_rows(self) -> dict[str, int]:
        """Rows dropped by the label gap, per boundary (for the stage's metrics)."""
        return {"before_valid": self.gap_dropped[0], "before_test": self.gap_dropped[1]}


def temporal_split(frame: pl.DataFrame, train_end: date, valid_end: date, *, gap_days: int) -> Split:
    """train: discharge < train_end - gap; valid: train_end <= discharge < valid_end - gap; test: the rest.

    The label of an index stay discharged on day t is decided by admissions on days t..t+gap
    (`warehouse.readmission_window_days`, day 0 included), so a stay discharged in the last `gap_days`
    before a window's start would have its label decided inside the next window: those stays are
    dropped (as the CV folds' `train.cv_gap_days` does inside the training window), and no training
    label window overlaps validation, nor a validation one the test window. `Split.gap_dropped`
    counts them per boundary. Each part is sorted by (discharge_date, stay_id) so that row order
    never depends on the file. Raises SplitError if a part is empty, lacks a class, or the windows
    overlap.
    """
    if not train_end < valid_end:
        raise SplitError(f"train_end ({train_end}) must be before valid_end ({valid_end})")
    if gap_days < 0:
        raise SplitError(f"gap_days must be >= 0, got {gap_days}")
    gap = timedelta(days=gap_days)
    ordered = frame.sort([DATE, KEY])
    parts = {
        "train": ordered.filter(pl.col(DATE) < train_end - gap),
        "valid": ordered.filter((pl.col(DATE) >= train_end) & (pl.col(DATE) < valid_end - gap)),
        "test": ordered.filter(pl.col(DATE) >= valid_end),
    }
    dropped = (
        ordered.filter((pl.col(DATE) >= train_end - gap) & (pl.col(DATE) < train_end)).height,
        ordered.filter((pl.col(DATE) >= valid_end - gap) & (pl.col(DATE) < valid_end)
                       & (pl.col(DATE) >= train_end)).height,
    )
    for name, part in parts.items():
        if part.height == 0:
            raise SplitError(f"{name} window is empty (train_end={train_end}, valid_end={valid_end}, "
                             f"gap {gap_days} days)")
        classes = set(part[LABEL].unique().to_list())
        if classes != {0, 1}:
            raise SplitError(f"{name} window has only label value(s) {sorted(classes)}")
    split = Split(**parts, gap_days=gap_days, gap_dropped=dropped)
    assert_disjoint(split)
    return split


def assert_disjoint(split: Split) -> None:
    """No stay in two windows, every window strictly after the previous one, and no label window
    (discharge .. discharge + gap_days) reaching into the next window."""
    bounds = (split.train[DATE].max(), split.valid[DATE].min(), split.valid[DATE].max(), split.test[DATE].min())
    if not all(isinstance(b, date) for b in bounds):
        raise SplitError(f"a temporal window is empty or not dated: {bounds}")
    train_max, valid_min, valid_max, test_min = cast(tuple[date, date, date, date], bounds)
    gap = timedelta(days=split.gap_days)
    if not (train_max < valid_min and valid_max < test_min):
        raise SplitError(f"temporal windows overlap: train<= {train_max}, valid {valid_min}..{valid_max}, "
                         f"test>= {test_min}")
    if not (train_max + gap < valid_min and valid_max + gap < test_min):
        raise SplitError(f"a {split.gap_days}-day label window crosses a boundary: train<= {train_max}, "
                         f"valid {valid_min}..{valid_max}, test>= {test_min}")
    keys = [set(part[KEY].to_list()) for part in (split.train, split.valid, split.test)]
    if keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2]:
        raise SplitError(f"a {KEY} appears in two windows")


def to_model_input(frame: pl.DataFrame) -> pd.DataFrame:
    """The model's input frame: the contract's features only, numerics as float64 (null -> NaN)."""
    return frame.select(
        [pl.col(c).cast(pl.Float64) for c in NUMERIC] + [pl.col(c).cast(pl.String) for c in CATEGORICAL]
    ).to_pandas()


def to_serving_input(frame: pl.DataFrame) -> pd.DataFrame:
    """The features with the contract's dtypes (ints stay ints): what a client sends the served model."""
    return frame.select(FEATURES).to_pandas()


def labels(frame: pl.DataFrame) -> np.ndarray:
    return frame[LABEL].to_numpy().astype(np.int64)


def time_folds(dates: np.ndarray, n_folds: int, gap_days: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over rows sorted by date (like sklearn's TimeSeriesSplit).

    The window is cut into n_folds + 1 blocks of about equal rows, each cut moved to a date
    boundary so a day is never on both sides. Fold k validates on block k+1 and trains on the
    rows discharged at least `gap_days` before that block starts (their label is known by then).
    """
    days = dates.astype("datetime64[D]")
    if days.size and np.any(days[1:] < days[:-1]):
        raise ValueError("time_folds: rows must be sorted by date")
    cuts = [np.datetime64(d, "D") for d in cut_dates(days, n_folds)]
    folds = []
    for k, start in enumerate(cuts):
        end = cuts[k + 1] if k + 1 < len(cuts) else None
        valid_mask = days >= start if end is None else (days >= start) & (days < end)
        train_mask = days < start - np.timedelta64(gap_days, "D")
        train_idx, valid_idx = np.flatnonzero(train_mask), np.flatnonzero(valid_mask)
        if train_idx.size == 0 or valid_idx.size == 0:
            raise SplitError(
                f"CV fold {k}: {train_idx.size} training and {valid_idx.size} validation rows "
                f"(training window too short for {n_folds} folds with a {gap_days}-day gap)"
            )
        folds.append((train_idx, valid_idx))
    return folds


def cut_dates(dates: np.ndarray, n_folds: int) -> list[date]:
    """The first validation day of each CV fold (for logging)."""
    days = dates.astype("datetime64[D]")
    n = days.size
    return [days[min((n * k) // (n_folds + 1), n - 1)].astype(date) for k in range(1, n_folds + 1)]

