"""Every corruption the simulator injected is repaired, quarantined or dropped by `clean`.

The truth log (data/truth/corruptions.parquet) names each dirty row by its raw key; this test
follows every one of them through the clean and quarantine tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.contracts import (
    CORRUPTION_KINDS,
    PMSI_YEAR_COLUMN,
    RAW_SEPARATOR,
    RAW_TABLES,
    SOURCES,
    TRUTH_CORRUPTIONS_FILE,
)

# Raw key -> clean key expression, per table (RSA_NUM is written as 10 digits).
_RSA = pl.col("rsa_num").cast(pl.String).str.zfill(10)
CLEAN_KEYS: dict[str, pl.Expr] = {
    "patients": pl.col("patient_id"),
    "hospitals": pl.col("hospital_id"),
    "stays": pl.concat_str([pl.col("pmsi_year").cast(pl.String), pl.col("hospital_id"), _RSA], separator="|"),
    "diagnoses": pl.concat_str(
        [pl.col("pmsi_year").cast(pl.String), pl.col("hospital_id"), _RSA, pl.col("diagnosis_rank").cast(pl.String)],
        separator="|",
    ),
    "dispensings": pl.col("dispensing_id"),
}
# Repaired column -> clean column holding the repaired value.
REPAIRED_COLUMN: dict[str, str] = {
    "BEN_RES_DPT": "department",
    "BDI_DEP": "department",
    "DGN_PAL": "icd10_code",
    "ASS_DGN": "icd10_code",
    "MNT_TOT_AM": "stay_cost",
    "BSE_REM_MNT": "amount",
}


@pytest.fixture(scope="module")
def cleaned(dirty_extract_root: Path) -> Path:
    return dirty_extract_root  # 5,000 patients, dirt x4: every corruption kind occurs many times


def _quarantine_keys(root: Path, table: str) -> pl.DataFrame:
    spec = RAW_TABLES[table]
    q = pl.read_parquet(root / "data" / "quarantine" / f"{table}.parquet")
    # A malformed line keeps its whole raw text in raw_line: rebuild its key from its file's columns.
    driving = SOURCES[spec.driving].columns
    fields = pl.col("raw_line").str.split(RAW_SEPARATOR)
    split_key = pl.concat_str(
        [pl.col(c) if c == PMSI_YEAR_COLUMN else fields.list.get(driving.index(c), null_on_oob=True)
         for c in spec.key],
        separator="|",
    )
    key = (
        pl.when(pl.col("reason") == "malformed_line")
        .then(split_key)
        .otherwise(pl.concat_str([pl.col(c) for c in spec.key], separator="|"))
    )
    return q.select(key.alias("row_key"), "reason")


def test_every_kind_was_injected(cleaned: Path) -> None:
    log = pl.read_parquet(cleaned / "data" / "truth" / TRUTH_CORRUPTIONS_FILE)
    assert set(log["kind"].unique()) == set(CORRUPTION_KINDS)


@pytest.mark.parametrize("table", list(RAW_TABLES))
def test_each_corruption_is_repaired_quarantined_or_dropped(cleaned: Path, table: str) -> None:
    log = pl.read_parquet(cleaned / "data" / "truth" / TRUTH_CORRUPTIONS_FILE).filter(pl.col("table") == table)
    clean = pl.read_parquet(cleaned / "data" / "clean" / f"{table}.parquet").with_columns(
        CLEAN_KEYS[table].alias("row_key")
    )
    quarantine = _quarantine_keys(cleaned, table)
    quarantined = set(quarantine["row_key"].to_list())
    by_reason = set(quarantine.select(pl.concat_str(["row_key", "reason"], separator="#")).to_series().to_list())
    clean_counts = dict(clean.group_by("row_key").len().iter_rows())
    problems: list[str] = []
    for row in log.iter_rows(named=True):
        key, kind = row["row_key"], row["kind"]
        outcome = CORRUPTION_KINDS[kind].outcome
        if outcome == "quarantined":
            if f"{key}#{kind}" not in by_reason:
                problems.append(f"{kind} {key}: not quarantined with that reason")
        elif outcome == "dropped":
            if clean_counts.get(key, 0) != 1 and key not in quarantined:
                problems.append(f"{kind} {key}: {clean_counts.get(key, 0)} clean copies")
        elif key in quarantined:
            continue  # repairable dirt on a row quarantined for another reason
        else:
            match = clean.filter(pl.col("row_key") == key)
            if match.height != 1:
                problems.append(f"{kind} {key}: {match.height} clean rows")
                continue
            value = match[REPAIRED_COLUMN[row["column"]]][0]
            expected: object = row["original_value"]
            if kind == "decimal_comma":
                expected = float(row["original_value"])
            if value != expected:
                problems.append(f"{kind} {key}: repaired to {value!r}, expected {expected!r}")
    assert not problems, f"{len(problems)} corruption(s) not handled, e.g. {problems[:5]}"


def test_row_accounting_adds_up(cleaned: Path) -> None:
    metrics = json.loads((cleaned / "reports" / "metrics" / "cleaning.json").read_text())
    seen: set[str] = set()
    for table in RAW_TABLES:
        m = metrics["tables"][table]
        assert m["raw_rows"] == m["clean_rows"] + m["quarantined_rows"] + m["duplicates_dropped"]
        assert sum(m["quarantine_reasons"].values()) == m["quarantined_rows"]
        for name, f in m["files"].items():  # per SNDS file, linked and referential ones included
            raw_lines = (cleaned / "data" / "raw" / name).read_bytes().rstrip(b"\n").count(b"\n")
            assert f["raw_rows"] == raw_lines, name
            assert f["raw_rows"] == f["clean_rows"] + f["quarantined_rows"] + f["duplicates_dropped"], name
            seen.add(name)
    assert seen == {p.name for p in (cleaned / "data" / "raw").iterdir()}  # every file read once


def test_no_stay_is_lost_to_key_collisions_across_years(cleaned: Path) -> None:
    metrics = json.loads((cleaned / "reports" / "metrics" / "cleaning.json").read_text())
    stays = metrics["tables"]["stays"]
    assert stays["quarantine_reasons"]["duplicate_key"] == 0
    clean = pl.read_parquet(cleaned / "data" / "clean" / "stays.parquet")
    assert clean.select("hospital_id", "rsa_num").is_duplicated().sum() > 1000  # same RSA_NUM in several years
    assert clean["stay_id"].is_unique().all()
