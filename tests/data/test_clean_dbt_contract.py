"""Clean rules against the warehouse's dbt tests: one dirty raw row must never stop the warehouse.

The error-level dbt tests are read from dbt/models/**/*.yml (never listed by hand here); each one
that raw data can reach must map to a clean quarantine reason (contracts.DBT_TEST_REASONS) or be
explained as holding by construction (contracts.DBT_TESTS_BY_CONSTRUCTION). Then one violating raw
row per rule is fed to clean (status: quarantined with that reason), and a corruption set holding
all of them goes through clean and `dbt build` (status: the warehouse builds, exit code 0).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipelines.clean import REASONS
from pipelines.config import CleanParams, Params
from pipelines.contracts import (
    CLEAN_SCHEMAS,
    DBT_TEST_REASONS,
    DBT_TESTS_BY_CONSTRUCTION,
    EXIT_MODES,
    HOSPITAL_CATEGORIES,
    PROVENANCES,
    RAW_TABLES,
    SEX_CODES,
    SOURCES,
    DbtTest,
)
from tests.support.raw_fixtures import DEFAULTS, FINESS, NO_CEILING, Row, clean_rows, driving_file, write_raw

PROJECT = Path(__file__).resolve().parents[2]
DBT_MODELS = PROJECT / "dbt" / "models"
SEEDS = PROJECT / "dbt" / "seeds"


@dataclass(frozen=True)
class DbtTestSpec:
    model: str
    column: str  # "" for a model-level test
    name: str
    arguments: dict[str, Any]

    @property
    def key(self) -> DbtTest:
        return (self.model, self.column, self.name)


def _specs(model: str, column: str, entries: list[Any] | None) -> list[DbtTestSpec]:
    """Error-level tests of one model or column (a test is error unless config.severity says warn)."""
    specs = []
    for entry in entries or []:
        name, body = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        body = body or {}
        if str((body.get("config") or {}).get("severity", "error")).lower() != "error":
            continue
        specs.append(DbtTestSpec(model, column, name, dict(body.get("arguments") or {})))
    return specs


def dbt_error_tests() -> list[DbtTestSpec]:
    """Every error-level data test declared in dbt/models/**/*.yml."""
    specs: list[DbtTestSpec] = []
    for path in sorted(DBT_MODELS.rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("models") or []:
            specs += _specs(model["name"], "", model.get("data_tests"))
            for column in model.get("columns") or []:
                specs += _specs(model["name"], column["name"], column.get("data_tests"))
    return specs


def reachable(specs: list[DbtTestSpec]) -> dict[DbtTest, DbtTestSpec]:
    """Tests raw data can reach: on staging models, or on columns carrying a clean/staging column.

    A carried column keeps the clean name or adds a prefix to it (previous_discharge_date,
    last_discharge_date): such derived dates break when the raw dates are inconsistent.
    """
    carried = {c for schema in CLEAN_SCHEMAS.values() for c in schema}
    carried |= {s.column for s in specs if s.model.startswith("stg_") and s.column}

    def carries(column: str) -> bool:
        return any(column == c or column.endswith(f"_{c}") for c in carried)

    return {s.key: s for s in specs if s.model.startswith("stg_") or (s.column and carries(s.column))}


SPECS = dbt_error_tests()
REACHABLE = reachable(SPECS)


def test_the_yaml_was_parsed() -> None:
    # guards the parser itself: known tests of each layer are found, warn-level ones are not
    keys = {s.key for s in SPECS}
    assert ("stg_stays", "length_of_stay", "non_negative") in keys
    assert ("stg_diagnoses", "", "unique_combination") in keys
    assert ("fct_stays", "discharge_mode", "accepted_values") in keys
    assert ("stg_stays", "patient_id", "relationships") not in keys  # severity: warn
    assert len(SPECS) > 100


def test_every_reachable_dbt_test_has_a_clean_counterpart() -> None:
    mapped = set(DBT_TEST_REASONS) | set(DBT_TESTS_BY_CONSTRUCTION)
    assert not set(DBT_TEST_REASONS) & set(DBT_TESTS_BY_CONSTRUCTION)
    missing = sorted(set(REACHABLE) - mapped)
    stale = sorted(mapped - set(REACHABLE))
    assert not missing, f"error-level dbt tests without a clean rule: {missing}"
    assert not stale, f"mapped dbt tests that no longer exist (or are not error-level): {stale}"


def test_mapped_reasons_are_clean_reasons_of_that_table() -> None:
    for key, (table, reason) in DBT_TEST_REASONS.items():
        assert table in RAW_TABLES, key
        assert reason in REASONS, key


def _seed_values(seed: str, column: str) -> set[str]:
    with (SEEDS / f"{seed}.csv").open(encoding="utf-8", newline="") as f:
        return {row[column] for row in csv.DictReader(f)}


def test_code_sets_agree_with_dbt() -> None:
    """Clean accepts exactly what dbt accepts (accepted_values, relationships to seeds, bounds)."""
    checked = 0
    for key, (_, reason) in DBT_TEST_REASONS.items():
        spec = REACHABLE[key]
        args = spec.arguments
        if spec.name == "accepted_values":
            values = {str(v) for v in args["values"]}
            codes = {
                "invalid_sex": {str(c) for c in SEX_CODES},
                "invalid_code": set(HOSPITAL_CATEGORIES.values()) if "category" in spec.column else set(EXIT_MODES),
            }[reason]
            assert codes == values, key
            checked += 1
        elif spec.name == "relationships" and "ref_" in args["to"]:
            seed = args["to"].split("'")[1]
            clean_codes = set(EXIT_MODES) if seed == "ref_exit_modes" else set(PROVENANCES)
            assert clean_codes == _seed_values(seed, args["field"]), key
            checked += 1
        elif spec.name == "value_between":
            p = CleanParams()
            assert args["min_value"] <= p.min_age, key
            assert p.max_age <= args["max_value"], key
            checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------- violating rows

_2099 = (date(2099, 1, 1) - date(2023, 1, 1)).days
# One raw row breaking each clean rule a dbt test depends on: (table, overrides of the default row).
# The row's key is made unique unless the rule is about the key itself (duplicate_key).
VIOLATIONS: dict[str, tuple[str, str, Row]] = {
    # id: (table, expected reason, row)
    "patient_duplicate": ("patients", "duplicate_key", {"BEN_NAI_ANN": "1951"}),
    "patient_no_id": ("patients", "missing_value", {"BEN_NIR_PSA": " "}),
    "patient_sex": ("patients", "invalid_sex", {"BEN_SEX_COD": "3"}),
    "hospital_duplicate": ("hospitals", "duplicate_key", {"IDE_ETA_NOM": "another name"}),
    "hospital_no_id": ("hospitals", "missing_value", {"IDE_ETA_NUM": ""}),
    "hospital_beds": ("hospitals", "negative_value", {"lit_mco": "-3"}),
    "stay_duplicate": ("stays", "duplicate_key", {"AGE_ANN": "73"}),
    "stay_no_rsa": ("stays", "missing_value", {"RSA_NUM": ""}),
    "stay_no_patient": ("stays", "missing_value", {"NIR_ANO_17": ""}),
    "stay_no_finess": ("stays", "missing_value", {"ETA_NUM": ""}),
    "stay_unknown_finess": ("stays", "unknown_finess", {"ETA_NUM": "750000099"}),
    "stay_no_admission": ("stays", "missing_value", {"EXE_SOI_DTD": ""}),
    "stay_no_discharge": ("stays", "missing_value", {"EXE_SOI_DTF": ""}),
    "stay_discharge_first": ("stays", "discharge_before_admission", {"EXE_SOI_DTF": "01/01/2023"}),
    "stay_negative_los": ("stays", "negative_length_of_stay", {"SEJ_NBJ": "-4"}),
    "stay_no_icd10": ("stays", "missing_value", {"DGN_PAL": ""}),
    "stay_entry_mode": ("stays", "invalid_code", {"ENT_MOD": "5"}),
    "stay_provenance": ("stays", "invalid_code", {"ENT_PRV": "8"}),
    "stay_no_exit_mode": ("stays", "missing_value", {"SOR_MOD": ""}),
    "stay_exit_mode": ("stays", "invalid_code", {"SOR_MOD": "4"}),
    "stay_destination": ("stays", "invalid_code", {"SOR_DES": "8"}),
    "stay_no_age": ("stays", "missing_value", {"AGE_ANN": ""}),
    "stay_age": ("stays", "impossible_age", {"AGE_ANN": "131"}),
    "stay_sex": ("stays", "invalid_sex", {"COD_SEX": "3"}),
    "stay_no_cost": ("stays", "missing_cost", {"MNT_TOT_AM": ""}),
    "stay_negative_cost": ("stays", "negative_cost", {"MNT_TOT_AM": "-12,50"}),
    # clean-only rules (no dbt test, but later models break on them)
    "stay_los_mismatch": ("stays", "length_of_stay_mismatch", {"SEJ_NBJ": "5"}),
    "stay_2099_typo": ("stays", "length_of_stay_mismatch", {"EXE_SOI_DTF": "01/01/2099"}),
    # admitted before the default stay, "discharged" in 2099 with a matching SEJ_NBJ: it encloses it
    "stay_2099": (
        "stays", "encloses_stay", {"EXE_SOI_DTD": "01/01/2023", "EXE_SOI_DTF": "01/01/2099", "SEJ_NBJ": str(_2099)},
    ),
    "stay_after_extract": (
        "stays", "date_outside_extract", {"EXE_SOI_DTD": "05/01/2025", "EXE_SOI_DTF": "06/01/2025", "SEJ_NBJ": "1"},
    ),
    "stay_before_extract": (
        "stays", "date_outside_extract", {"EXE_SOI_DTD": "20/12/2020", "EXE_SOI_DTF": "28/12/2020", "SEJ_NBJ": "8"},
    ),
    "diagnosis_duplicate": ("diagnoses", "duplicate_key", {"ASS_DGN": "E119"}),
    "diagnosis_no_rsa": ("diagnoses", "missing_value", {"RSA_NUM": ""}),
    "diagnosis_no_icd10": ("diagnoses", "missing_value", {"ASS_DGN": ""}),
    "dispensing_duplicate": ("dispensings", "duplicate_key", {"PHA_ACT_QSN": "2"}),
    "dispensing_no_id": ("dispensings", "missing_value", {"DCT_ORD_NUM": ""}),
    "dispensing_no_patient": ("dispensings", "missing_value", {"BEN_NIR_PSA": ""}),
    "dispensing_no_date": ("dispensings", "missing_value", {"EXE_SOI_DTD": ""}),
    "dispensing_2099": ("dispensings", "date_outside_extract", {"EXE_SOI_DTD": "01/01/2099"}),
    "dispensing_amount": ("dispensings", "negative_value", {"BSE_REM_MNT": "-1"}),
    "death_2099": ("patients", "date_outside_extract", {"BEN_DCD_DTE": "01/01/2099"}),
}
_KEY_COLUMN = {
    "patients": "BEN_NIR_PSA",
    "hospitals": "IDE_ETA_NUM",
    "stays": "RSA_NUM",
    "diagnoses": "DGN_ASS_NUM",
    "dispensings": "DCT_ORD_NUM",
}


def violating_row(index: int, table: str, reason: str, row: Row) -> Row:
    """The example row with a key of its own (kept as the default's for duplicate_key)."""
    assert isinstance(row, dict)
    if reason == "duplicate_key":
        return row
    unique = {
        "patients": f"P{index:016d}",
        "hospitals": f"75{index:07d}",
        "stays": str(100 + index),
        "diagnoses": str(10 + index),
        "dispensings": f"D{100 + index}",
    }[table]
    return {_KEY_COLUMN[table]: unique, **row}


def test_every_mapped_rule_has_a_violating_row() -> None:
    examples = {(table, reason) for table, reason, _ in VIOLATIONS.values()}
    assert set(DBT_TEST_REASONS.values()) <= examples


@pytest.mark.parametrize("example", sorted(VIOLATIONS))
def test_violating_row_is_quarantined_with_its_reason(tmp_path: Path, example: str) -> None:
    table, reason, row = VIOLATIONS[example]
    index = sorted(VIOLATIONS).index(example)
    out = clean_rows(tmp_path, **{table: [{}, violating_row(index, table, reason, row)]})
    m = out.table_metrics(table)
    assert (m["raw_rows"], m["clean_rows"], m["quarantined_rows"]) == (2, 1, 1)
    quarantine = out.quarantine(table).filter(pl.col("source_file") == driving_file(table))
    assert quarantine["reason"].to_list() == [reason]
    assert quarantine["line_number"].to_list() == [3]


def test_default_rows_are_clean(tmp_path: Path) -> None:
    out = clean_rows(tmp_path)
    assert all(out.table_metrics(t)["clean_rows"] == 1 for t in RAW_TABLES)


# --------------------------------------------------------------------------- the warehouse


def corruption_set() -> dict[str, list[Row]]:
    """Valid default rows plus every violating row, and a quoted hospital name holding ';'."""
    tables: dict[str, list[Row]] = {name: [{}] for name in RAW_TABLES}
    for index, example in enumerate(sorted(VIOLATIONS)):
        table, reason, row = VIOLATIONS[example]
        tables[table].append(violating_row(index, table, reason, row))
    quoted = {**DEFAULTS["hospitals"], "IDE_ETA_NUM": "750000002", "IDE_ETA_NOM": '"Clinique A; B ""Est"""'}
    tables["hospitals"].append(";".join(quoted[c] for c in SOURCES["BE_IDE_R"].columns))
    tables["stays"].append({"ETA_NUM": "750000002", "RSA_NUM": "1"})
    return tables


@pytest.fixture(scope="module")
def corrupted_warehouse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipelines.clean import run_clean
    from pipelines.warehouse import run_warehouse

    root = tmp_path_factory.mktemp("corrupted")
    shutil.copytree(PROJECT / "dbt", root / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    paths = write_raw(root, **corruption_set())
    metrics = run_clean(paths, NO_CEILING)  # a corruption set is all dirt: no mass-loss ceiling
    figures = run_warehouse(paths, Params())  # raises WarehouseError if any error-level dbt test fails
    return {"paths": paths, "metrics": metrics, "figures": figures}


def test_corruption_set_builds_the_warehouse(corrupted_warehouse: dict[str, Any]) -> None:
    import duckdb

    metrics = corrupted_warehouse["metrics"]
    expected: dict[str, int] = {}
    for table, _, _ in VIOLATIONS.values():
        expected[table] = expected.get(table, 0) + 1
    for table, count in expected.items():
        m = metrics["tables"][table]
        assert m["quarantined_rows"] == count, table
        assert m["raw_rows"] == m["clean_rows"] + m["quarantined_rows"] + m["duplicates_dropped"], table
    con = duckdb.connect(str(corrupted_warehouse["paths"].warehouse), read_only=True)
    try:
        stays = con.execute("select stay_id from marts.fct_stays order by stay_id").fetchall()
        names = con.execute("select hospital_name from marts.dim_hospitals order by 1").fetchall()
    finally:
        con.close()
    # the two clean stays reach the marts, and the quoted name kept its ';' and quotes
    assert [s[0] for s in stays] == [f"{FINESS}-2023-1", "750000002-2023-1"]
    assert ('Clinique A; B "Est"',) in names
