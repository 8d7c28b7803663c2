"""What clean lets through, the dbt seeds and the dbt accepted-values tests agree.

An accepted raw value must never fail the warehouse: the code sets live in contracts.py and
the dbt project must hold exactly the same ones.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from pipelines import contracts

DBT = Path(__file__).resolve().parents[2] / "dbt"


def _seed_codes(name: str, column: str) -> set[str]:
    with (DBT / "seeds" / f"{name}.csv").open(encoding="utf-8") as handle:
        return {row[column] for row in csv.DictReader(handle)}


def _accepted(models_file: Path, model: str, column: str) -> list[Any]:
    doc = yaml.safe_load(models_file.read_text(encoding="utf-8"))
    for m in doc["models"]:
        if m["name"] != model:
            continue
        for c in m["columns"]:
            if c["name"] != column:
                continue
            for test in c.get("data_tests", []):
                if isinstance(test, dict) and "accepted_values" in test:
                    return list(test["accepted_values"]["arguments"]["values"])
    raise AssertionError(f"no accepted_values test on {model}.{column}")


def test_exit_modes_and_provenances_are_the_seeds() -> None:
    assert _seed_codes("ref_exit_modes", "exit_mode") == set(contracts.EXIT_MODES)
    assert _seed_codes("ref_provenances", "provenance") == set(contracts.PROVENANCES)


def test_sex_codes_are_accepted_by_dbt() -> None:
    staging = DBT / "models" / "staging" / "_staging.yml"
    marts = DBT / "models" / "marts" / "_marts.yml"
    clean_values = set(contracts.SEX_CODES)
    assert set(_accepted(staging, "stg_patients", "sex")) == clean_values
    assert set(_accepted(staging, "stg_stays", "sex")) == clean_values
    assert set(_accepted(marts, "dim_patients", "sex")) == clean_values


def test_hospital_categories_are_accepted_by_dbt() -> None:
    staging = DBT / "models" / "staging" / "_staging.yml"
    assert set(_accepted(staging, "stg_hospitals", "hospital_category")) == set(contracts.HOSPITAL_CATEGORY_VALUES)


def test_discharge_modes_in_marts_are_the_exit_modes() -> None:
    marts = DBT / "models" / "marts" / "_marts.yml"
    assert set(_accepted(marts, "fct_stays", "discharge_mode")) == set(contracts.EXIT_MODES)
