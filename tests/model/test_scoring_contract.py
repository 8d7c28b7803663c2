"""The scoring contract: derived from params, the dbt tests and the seeds; its checks name column and
row and never the value."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from pipelines import contracts
from pipelines.config import Params
from pipelines.model import scoring_contract as sc

ROOT = Path(__file__).resolve().parents[2]


def _mart_tests() -> dict[str, list[Any]]:
    marts = yaml.safe_load((ROOT / "dbt/models/marts/_marts.yml").read_text(encoding="utf-8"))
    model = next(m for m in marts["models"] if m["name"] == "ml_readmission_features")
    return {c["name"]: c.get("data_tests", []) for c in model["columns"]}


def _accepted(tests: list[Any]) -> list[Any]:
    return next(t["accepted_values"]["arguments"]["values"] for t in tests
                if isinstance(t, dict) and "accepted_values" in t)


def test_bounds_come_from_params() -> None:
    default = sc.scoring_contract(Params.model_validate({}))
    age = default.rule("age")
    assert isinstance(age, sc.NumericRule)
    assert (age.low, age.high) == (18, 115)
    los = default.rule("length_of_stay")
    assert isinstance(los, sc.NumericRule)
    assert los.high == 1460  # 2021-01-01 -> 2024-12-31
    custom = sc.scoring_contract(Params.model_validate({
        "clean": {"max_age": 100},
        "warehouse": {"minor_age": 16, "data_start_date": "2020-01-01", "data_end_date": "2020-12-31"}}))
    age, los = custom.rule("age"), custom.rule("days_since_last_discharge")
    assert isinstance(age, sc.NumericRule)
    assert isinstance(los, sc.NumericRule)
    assert (age.low, age.high) == (16, 100)
    assert (los.high, los.nullable) == (365, True)
    assert [r.name for r in default.numeric] == list(contracts.NUMERIC_FEATURES)
    assert [r.name for r in default.categorical] == list(contracts.CATEGORICAL_FEATURES)


def test_constants_match_the_seeds_and_dbt_tests() -> None:
    with (ROOT / "dbt/seeds/ref_charlson_categories.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["charlson_weight"]) for r in rows if not r["superseded_by"]) == sc.CHARLSON_MAX
    tests = _mart_tests()
    assert tuple(_accepted(tests["diagnosis_group"])) == sc.DIAGNOSIS_GROUPS
    assert tuple(_accepted(tests["discharge_destination"])) == sc.DISCHARGE_DESTINATIONS
    assert _accepted(tests["sex"]) == [1, 2, 9]
    assert _accepted(tests["emergency_admission"]) == [0, 1]
    lace = next(t["value_between"]["arguments"] for t in tests["lace_score"] if isinstance(t, dict))
    assert lace == {"min_value": 0, "max_value": sc.LACE_MAX}
    with (ROOT / "dbt/seeds/ref_departments.csv").open(encoding="utf-8") as handle:
        assert tuple(r["department"] for r in csv.DictReader(handle)) == contracts.IDF_DEPARTMENTS


def test_trained_categories_narrow_the_code_sets() -> None:
    contract = sc.scoring_contract(Params.model_validate({}), {"department": ["75", "93", "99"]})
    assert contract.rule("department") == sc.CategoricalRule("department", ("75", "93"))
    assert contract.rule("hospital_category") == sc.CategoricalRule(
        "hospital_category", contracts.HOSPITAL_CATEGORY_VALUES)


def test_numeric_checks_name_first_row_and_count() -> None:
    rule = sc.NumericRule("age", 18, 115)
    sc.check_numeric(rule, np.array([18.0, 115.0, 60.0]))
    with pytest.raises(sc.ScoringContractError) as caught:
        sc.check_numeric(rule, np.array([60.0, 17.0, 200.0, 1e300]))
    assert str(caught.value) == ("column 'age', 3 rows (first: row 1): out of range; "
                                 "allowed: whole numbers in [18, 115]")
    assert (caught.value.column, caught.value.row, caught.value.count) == ("age", 1, 3)
    with pytest.raises(sc.ScoringContractError, match=r"row 0: null or NaN"):
        sc.check_numeric(rule, np.array([math.nan]))
    sc.check_numeric(sc.NumericRule("days", 0, 10, nullable=True), np.array([math.nan, 3.0]))
    with pytest.raises(sc.ScoringContractError, match=r"row 1: not a whole number"):
        sc.check_numeric(rule, np.array([60.0, 60.5]))
    with pytest.raises(sc.ScoringContractError, match=r"row 0: not a finite number"):
        sc.check_numeric(sc.NumericRule("stay_cost", 0, sc.FLOAT32_MAX, integer=False), np.array([math.inf]))
    with pytest.raises(sc.ScoringContractError, match=r"row 0: not an allowed code; allowed: one of 1, 2"):
        sc.check_numeric(sc.NumericRule("sex", 1, 2, codes=(1, 2)), np.array([3.0]))


def _json_row(**change: Any) -> dict[str, list[Any]]:
    row: dict[str, Any] = {
        "stay_id": "750007919-10005008", "discharge_date": "2024-05-17", "age": 58, "sex": 1,
        "deprivation_rate": 11.7, "length_of_stay": 9, "emergency_admission": 0, "charlson_score": 0,
        "prior_stays_6m": 1, "prior_stays_12m": 2, "prior_emergency_6m": 0, "prior_emergency_12m": 0,
        "days_since_last_discharge": None, "stay_cost": 6792.26, "prior_atc_classes_90d": 1, "lace_score": 5,
        "department": "77", "diagnosis_group": "OTHER", "hospital_category": "AP-HP/CHU",
        "discharge_destination": "home"}
    row.update(change)
    return {k: [v] for k, v in row.items()}


def test_json_columns_are_checked_without_echo() -> None:
    contract = sc.scoring_contract(Params.model_validate({}))
    numeric, categorical = sc.check_columns(contract, _json_row())
    assert numeric[0].tolist() == [58.0]
    assert math.isnan(numeric[10][0])
    assert categorical[0].tolist() == ["77"]
    for change, message in [
        ({"age": "58"}, "column 'age', row 0: expected a whole number, got str"),
        ({"age": True}, "column 'age', row 0: expected a whole number, got bool"),
        ({"age": 10**400}, "column 'age', row 0: not a finite number"),
        ({"department": "Paris 75"}, "column 'department', row 0: unknown value"),
        ({"department": ["77"]}, "column 'department', row 0: expected a string, got list"),
        ({"stay_id": 750007919}, "column 'stay_id', row 0: expected a string, got int"),
        ({"discharge_date": "17/05/2024"}, "column 'discharge_date', row 0: not an ISO date"),
    ]:
        with pytest.raises(sc.ScoringContractError) as caught:
            sc.check_columns(contract, _json_row(**change))
        assert str(caught.value).startswith(message), str(caught.value)
        for secret in ("Paris", "750007919", "17/05", "'58'"):
            assert secret not in str(caught.value)


def test_check_frame_on_a_batch() -> None:
    contract = sc.scoring_contract(Params.model_validate({}))
    good = pl.DataFrame({k: v for k, v in _json_row(days_since_last_discharge=3).items() if k != "discharge_date"})
    big = pl.concat([good] * 1000)
    sc.check_frame(contract, big)
    bad = big.with_columns(sex=pl.when(pl.int_range(pl.len()) >= 998).then(7).otherwise(pl.col("sex")))
    with pytest.raises(sc.ScoringContractError, match=r"column 'sex', 2 rows \(first: row 998\)"):
        sc.check_frame(contract, bad)
    with pytest.raises(sc.ScoringContractError, match=r"column 'department', row 0: null"):
        sc.check_frame(contract, good.with_columns(department=pl.lit(None, pl.String)))
