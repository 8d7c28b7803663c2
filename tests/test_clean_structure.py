"""Whole-file behaviour of the clean stage: structural errors, schemas, outputs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.clean import REPAIR_KINDS, RawFileError, run_clean
from pipelines.config import CleanParams, Paths
from pipelines.contracts import CLEAN_SCHEMAS, CORRUPTION_KINDS, QUARANTINE_EXTRA_COLUMNS, RAW_TABLES
from tests.raw_fixtures import clean_rows, render, write_raw

STAYS = RAW_TABLES["stays"].file


def stays_file(paths: Paths) -> Path:
    return paths.raw / STAYS


def assert_fails_cleanly(paths: Paths, *fragments: str) -> None:
    with pytest.raises(RawFileError) as info:
        run_clean(paths, CleanParams())
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert not list(paths.clean.glob("*")) if paths.clean.exists() else True
    assert not list(paths.quarantine.glob("*")) if paths.quarantine.exists() else True
    assert not (paths.metrics / "cleaning.json").exists()


def test_missing_file(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).unlink()
    assert_fails_cleanly(paths, STAYS, "not found")


def test_empty_file(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_bytes(b"")
    assert_fails_cleanly(paths, STAYS, "empty")


@pytest.mark.parametrize("table", sorted(RAW_TABLES))
@pytest.mark.parametrize("tail", ["", "\n\n", "\r\n \r\n"])
def test_header_only_file_is_a_structural_error(tmp_path: Path, table: str, tail: str) -> None:
    # every raw table is required: a header with no data row (blank lines aside) stops the stage
    paths = write_raw(tmp_path, **{table: []})
    path = paths.raw / RAW_TABLES[table].file
    path.write_text(path.read_text(encoding="utf-8") + tail, encoding="utf-8")
    assert_fails_cleanly(paths, RAW_TABLES[table].file, "header but no data row")


def test_header_without_final_newline_is_a_structural_error(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_text(";".join(RAW_TABLES["stays"].columns), encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "header but no data row")


def test_cr_only_line_endings_are_named(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    text = render("stays", [{}, {"RSA_NUM": "2"}])
    stays_file(paths).write_text(text.replace("\n", "\r"), encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "CR-only line endings")


def test_non_utf8_bytes(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    good = stays_file(paths).read_bytes()
    stays_file(paths).write_bytes(good + b"750000001;\xff;broken\n")
    assert_fails_cleanly(paths, STAYS, "UTF-8", f"offset {len(good) + 10}", "line 3")


@pytest.mark.parametrize(("separator", "label"), [(",", "','"), ("\t", "tab"), ("|", "'|'")])
def test_wrong_delimiter(tmp_path: Path, separator: str, label: str) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_text(render("stays", [{}]).replace(";", separator), encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, f"looks {label}-separated, expected ';'")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    text = render("stays", [{}]).replace("MNT_TOT_AM", "MONTANT").replace("BDI_DEP", "DEP")
    stays_file(paths).write_text(text, encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "missing required column(s)", "BDI_DEP", "MNT_TOT_AM")


def test_duplicate_column_names(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    text = render("stays", [{}]).replace("ENT_PRV", "ENT_MOD", 1)
    stays_file(paths).write_text(text, encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "duplicate column", "ENT_MOD")


def test_failed_run_removes_previous_outputs_and_leaves_no_temp_files(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    run_clean(paths, CleanParams())
    assert (paths.clean / "stays.parquet").exists()
    stays_file(paths).write_bytes(b"\xff\xfe")
    assert_fails_cleanly(paths, STAYS)


def test_columns_in_another_order_and_extra_columns_are_accepted(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    columns = ("EXTRA", *reversed(RAW_TABLES["hospitals"].columns))
    values = {
        "EXTRA": "x",
        "IDE_ETA_NUM": "750000001",
        "IDE_ETA_NOM": "CHU",
        "IDE_BDI_COD": "75013",
        "IDE_PSH_CAT": "355",
        "IDE_LIT_NBR": "300",
    }
    text = ";".join(columns) + "\n" + ";".join(values[c] for c in columns) + "\n"
    (paths.raw / RAW_TABLES["hospitals"].file).write_text(text, encoding="utf-8")
    run_clean(paths, CleanParams())
    row = pl.read_parquet(paths.clean / "hospitals.parquet").row(0, named=True)
    assert row == {
        "hospital_id": "750000001",
        "hospital_name": "CHU",
        "postal_code": "75013",
        "department": "75",
        "category_code": "355",
        "category": "CH",
        "beds": 300,
    }


def dirty(tmp_path: Path) -> Paths:
    """A little of every kind of dirt, so that every output has rows."""
    out = clean_rows(
        tmp_path,
        stays=[
            {"RSA_NUM": "1", "BDI_DEP": "093", "MNT_TOT_AM": "12,5"},
            {"RSA_NUM": "2", "MNT_TOT_AM": "-1"},
            "broken;line",
            {"RSA_NUM": "1", "BDI_DEP": "093", "MNT_TOT_AM": "12,5"},
        ],
        patients=[{}, {"BEN_NIR_PSA": "P2", "BEN_NAI_ANN": "1850"}],
        hospitals=[{}, {"IDE_ETA_NUM": "940000002", "IDE_BDI_COD": "75001"}],
        diagnoses=[{}, {"RSA_NUM": "2"}],
        dispensings=[{}, {"DCT_ORD_NUM": "D2", "EXE_SOI_DTD": "x"}],
    )
    return out.paths


def test_clean_schemas_match_the_contract(tmp_path: Path) -> None:
    paths = dirty(tmp_path)
    for name, schema in CLEAN_SCHEMAS.items():
        frame = pl.read_parquet(paths.clean / f"{name}.parquet")
        assert dict(frame.schema) == schema, name
        assert frame.height > 0, name


def test_quarantine_layout(tmp_path: Path) -> None:
    paths = dirty(tmp_path)
    for name, spec in RAW_TABLES.items():
        frame = pl.read_parquet(paths.quarantine / f"{name}.parquet")
        expected = {c: pl.String() for c in spec.columns} | QUARANTINE_EXTRA_COLUMNS
        assert dict(frame.schema) == expected, name
        assert frame.height >= 1, name


def test_metrics_file(tmp_path: Path) -> None:
    paths = dirty(tmp_path)
    text = (paths.metrics / "cleaning.json").read_text(encoding="utf-8")
    metrics = json.loads(text)
    assert text == json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    assert set(metrics["tables"]) == set(RAW_TABLES)
    stays = metrics["tables"]["stays"]
    assert (stays["raw_rows"], stays["clean_rows"], stays["quarantined_rows"], stays["duplicates_dropped"]) == (
        4,
        1,
        2,
        1,
    )
    assert stays["quarantine_reasons"]["malformed_line"] == 1
    assert stays["quarantine_reasons"]["negative_cost"] == 1
    assert stays["repairs"] == {"decimal_comma": 1, "department_format": 1, "icd_format": 0}
    totals = metrics["totals"]
    for key in ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped"):
        assert totals[key] == sum(t[key] for t in metrics["tables"].values())
    assert totals["quarantined_rows"] == sum(totals["quarantine_reasons"].values())
    assert not [p for p in paths.root.rglob("*") if ".tmp" in p.name]


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    paths = dirty(tmp_path)
    outputs = [*paths.clean.glob("*.parquet"), *paths.quarantine.glob("*.parquet"), paths.metrics / "cleaning.json"]
    first = {p: p.read_bytes() for p in outputs}
    run_clean(paths, CleanParams())
    assert {p: p.read_bytes() for p in outputs} == first
    assert len(first) == 2 * len(RAW_TABLES) + 1


def test_repair_kinds_are_the_repaired_corruptions() -> None:
    assert set(REPAIR_KINDS) == {k.name for k in CORRUPTION_KINDS.values() if k.outcome == "repaired"}


@pytest.mark.parametrize("odd", ["\x1f", "\r"])
def test_odd_control_characters_keep_line_numbers(tmp_path: Path, odd: str) -> None:
    # a unit separator forces the Python line splitter; a bare CR must not split a line
    paths = write_raw(tmp_path)
    lines = render("diagnoses", [{}, {"DGN_ASS_NUM": "2"}, {"DGN_ASS_NUM": "3"}]).split("\n")
    lines[2] = lines[2].replace("750000001", f"75000{odd}0001")
    (paths.raw / RAW_TABLES["diagnoses"].file).write_text("\n".join(lines), encoding="utf-8")
    run_clean(paths, CleanParams())
    quarantine = pl.read_parquet(paths.quarantine / "diagnoses.parquet")
    assert quarantine["line_number"].to_list() == [3]
    assert quarantine["reason"].to_list() == ["unknown_stay"]
    assert pl.read_parquet(paths.clean / "diagnoses.parquet")["diagnosis_rank"].to_list() == [1, 3]
