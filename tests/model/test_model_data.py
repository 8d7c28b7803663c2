"""Feature contract, leakage guard, temporal split and time-ordered CV folds."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines import contracts
from pipelines.model import data as fdata
from tests.support.feature_fixtures import make_features


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return make_features(n_rows=1500, seed=3)[0]


def test_fixture_matches_the_contract(features: pl.DataFrame) -> None:
    assert features.schema == pl.Schema(contracts.FEATURE_SCHEMA)
    assert features["days_since_last_discharge"].null_count() > 0
    validated = fdata.validate_features(features)
    assert validated.columns == list(contracts.FEATURE_SCHEMA)


def test_extra_column_dated_after_discharge_is_refused(features: pl.DataFrame) -> None:
    leaky = features.with_columns(readmission_date=pl.col("discharge_date") + timedelta(days=12))
    with pytest.raises(fdata.LeakageError, match="'readmission_date'") as info:
        fdata.check_no_leakage(leaky)
    assert "dated after discharge_date" in str(info.value)
    with pytest.raises(fdata.LeakageError, match="readmission_date"):
        fdata.validate_features(leaky)


def test_text_column_named_like_a_date_is_refused(features: pl.DataFrame) -> None:
    leaky = features.with_columns(next_admission_date=pl.lit("2024-01-01"))
    with pytest.raises(fdata.LeakageError, match="'next_admission_date'"):
        fdata.check_no_leakage(leaky)


def test_any_extra_column_is_refused(features: pl.DataFrame) -> None:
    with pytest.raises(fdata.LeakageError, match=r"'readmission_cost'.*not in contracts\.FEATURE_SCHEMA"):
        fdata.check_no_leakage(features.with_columns(readmission_cost=pl.lit(1.0)))


def test_missing_or_mistyped_column_is_refused(features: pl.DataFrame) -> None:
    with pytest.raises(fdata.FeatureContractError, match="stay_cost"):
        fdata.validate_features(features.drop("stay_cost"))
    with pytest.raises(fdata.FeatureContractError, match="'age'"):
        fdata.validate_features(features.with_columns(pl.col("age").cast(pl.String)))
    with pytest.raises(fdata.FeatureContractError, match="0/1"):
        fdata.validate_features(features.with_columns(readmitted_30d=pl.lit(2, pl.Int32)))
    with pytest.raises(fdata.FeatureContractError, match="not unique"):
        fdata.validate_features(pl.concat([features, features.head(1)]))


def test_contract_columns_pass_the_guard(features: pl.DataFrame) -> None:
    assert set(features.columns) == set(contracts.FEATURE_SCHEMA)  # the fixture is the whole contract
    fdata.check_no_leakage(features)
    # the same frame with any one contract column cast to a date is refused: the guard did look
    name = next(c for c in features.columns if c != fdata.DATE)
    with pytest.raises(fdata.LeakageError, match=f"'{name}'"):
        fdata.check_no_leakage(features.with_columns(pl.lit(None, dtype=pl.Date).alias(name)))


WINDOW = 30  # warehouse.readmission_window_days: the label gap of the split


def test_temporal_split_windows(features: pl.DataFrame) -> None:
    split = fdata.temporal_split(features, date(2023, 10, 1), date(2024, 4, 1), gap_days=0)
    assert split.train[fdata.DATE].max() < date(2023, 10, 1)  # type: ignore[operator]
    assert date(2023, 10, 1) <= split.valid[fdata.DATE].min()  # type: ignore[operator]
    assert split.valid[fdata.DATE].max() < date(2024, 4, 1)  # type: ignore[operator]
    assert split.test[fdata.DATE].min() >= date(2024, 4, 1)  # type: ignore[operator]
    assert sum(split.sizes().values()) == features.height
    assert split.gap_rows() == {"before_valid": 0, "before_test": 0}
    for part in (split.train, split.valid, split.test):
        assert part[fdata.DATE].is_sorted()


def test_no_label_window_crosses_a_split_boundary(features: pl.DataFrame) -> None:
    """A stay's 30-day label is decided by admissions from its discharge day to 30 days later: no
    training label window may reach the validation window, nor a validation one the test window."""
    train_end, valid_end = date(2023, 10, 1), date(2024, 4, 1)
    split = fdata.temporal_split(features, train_end, valid_end, gap_days=WINDOW)
    window = timedelta(days=WINDOW)
    train_max, valid_max = split.train[fdata.DATE].max(), split.valid[fdata.DATE].max()
    assert isinstance(train_max, date)
    assert isinstance(valid_max, date)
    train_label_end, valid_label_end = train_max + window, valid_max + window
    assert train_label_end < train_end, f"a train label window ends {train_label_end}, validation starts {train_end}"
    assert valid_label_end < valid_end, f"a validation label window ends {valid_label_end}, test starts {valid_end}"
    # exactly the stays discharged in the 30 days before each start are dropped, nothing else
    dates = features[fdata.DATE]
    before_valid = int(((dates >= train_end - window) & (dates < train_end)).sum())
    before_test = int(((dates >= valid_end - window) & (dates < valid_end)).sum())
    assert before_valid > 0
    assert before_test > 0
    assert split.gap_rows() == {"before_valid": before_valid, "before_test": before_test}
    assert sum(split.sizes().values()) + before_valid + before_test == features.height
    assert split.test.height == int((dates >= valid_end).sum())  # the test window itself is whole
    without_gap = fdata.temporal_split(features, train_end, valid_end, gap_days=0)
    ungapped_max = without_gap.train[fdata.DATE].max()
    assert isinstance(ungapped_max, date)
    assert ungapped_max + window >= train_end  # without the gap the check above would fail


def test_a_split_whose_label_window_crosses_is_refused(features: pl.DataFrame) -> None:
    split = fdata.temporal_split(features, date(2023, 10, 1), date(2024, 4, 1), gap_days=0)
    with pytest.raises(fdata.SplitError, match="label window crosses"):
        fdata.assert_disjoint(fdata.Split(split.train, split.valid, split.test, gap_days=WINDOW))


def test_temporal_split_refuses_empty_windows(features: pl.DataFrame) -> None:
    with pytest.raises(fdata.SplitError, match="test window is empty"):
        fdata.temporal_split(features, date(2023, 10, 1), date(2030, 1, 1), gap_days=WINDOW)
    with pytest.raises(fdata.SplitError, match="before"):
        fdata.temporal_split(features, date(2024, 1, 1), date(2023, 1, 1), gap_days=WINDOW)


def test_model_input_has_features_only(features: pl.DataFrame) -> None:
    x = fdata.to_model_input(features)
    assert list(x.columns) == fdata.FEATURES
    assert not {fdata.KEY, fdata.DATE, fdata.LABEL} & set(x.columns)
    assert x["days_since_last_discharge"].isna().any()
    assert all(x[c].dtype == np.float64 for c in fdata.NUMERIC)


def test_time_folds_are_ordered_with_a_gap(features: pl.DataFrame) -> None:
    ordered = features.sort(fdata.DATE)
    days = ordered[fdata.DATE].to_numpy().astype("datetime64[D]")
    folds = fdata.time_folds(days, 3, 30)
    assert len(folds) == 3
    previous_valid_end = None
    for train_idx, valid_idx in folds:
        assert days[train_idx].max() <= days[valid_idx].min() - np.timedelta64(30, "D")
        if previous_valid_end is not None:
            assert days[valid_idx].min() >= previous_valid_end
        previous_valid_end = days[valid_idx].max()
    # the validation blocks together cover the last 3/4 of the window, a day never split
    covered = np.concatenate([v for _, v in folds])
    assert np.unique(covered).size == covered.size
    assert days[covered].min() > days.min()
    with pytest.raises(ValueError, match="sorted"):
        fdata.time_folds(days[::-1], 3, 30)
