"""Every corruption the simulator injected is repaired, quarantined or dropped by `clean`.

The truth log (data/truth/corruptions.parquet) names each dirty row by its raw key; this test
follows every one of them through the clean and quarantine tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.clean import run_clean
from pipelines.config import Params, Paths
from pipelines.contracts import CORRUPTION_KINDS, RAW_SEPARATOR, RAW_TABLES, TRUTH_CORRUPTIONS_FILE
from pipelines.generate import run_generate

# Raw key -> clean key expression, per table.
CLEAN_KEYS: dict[str, pl.Expr] = {
    "patients": pl.col("patient_id"),
    "hospitals": pl.col("hospital_id"),
    "stays": pl.concat_str([pl.col("hospital_id"), pl.col("rsa_num").cast(pl.String)], separator="|"),
    "diagnoses": pl.concat_str(
        [pl.col("hospital_id"), pl.col("rsa_num").cast(pl.String), pl.col("diagnosis_rank").cast(pl.String)],
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
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("roundtrip")
    data = Params().model_dump()
    data["generate"]["patients"] = 5000
    data["generate"]["chunk_patients"] = 2000
    # Dirtier than the default so that every kind occurs many times.
    data["generate"]["dirt"] = {k: v * 4 for k, v in data["generate"]["dirt"].items()}
    params = Params.model_validate(data)
    run_generate(Paths(root), params, progress=False)
    run_clean(Paths(root), params.clean)
    return root


def _quarantine_keys(root: Path, table: str) -> pl.DataFrame:
    spec = RAW_TABLES[table]
    q = pl.read_parquet(root / "data" / "quarantine" / f"{table}.parquet")
    first = spec.columns[0]
    # A malformed line keeps its whole raw text in the first column: rebuild its key from it.
    split_key = pl.col(first).str.split(RAW_SEPARATOR).list.slice(0, len(spec.key)).list.join("|")
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
    for table, spec in RAW_TABLES.items():
        m = metrics["tables"][table]
        raw_lines = (cleaned / "data" / "raw" / spec.file).read_bytes().rstrip(b"\n").count(b"\n")
        assert m["raw_rows"] == raw_lines
        assert m["raw_rows"] == m["clean_rows"] + m["quarantined_rows"] + m["duplicates_dropped"]
        assert sum(m["quarantine_reasons"].values()) == m["quarantined_rows"]
