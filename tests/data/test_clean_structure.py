"""Whole-extract behaviour of the clean stage: structural errors, formats, schemas, outputs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.clean import REPAIR_KINDS, MassLossError, RawFileError, run_clean
from pipelines.config import CleanParams, Paths
from pipelines.contracts import CLEAN_SCHEMAS, CORRUPTION_KINDS, QUARANTINE_EXTRA_COLUMNS, RAW_TABLES, SOURCES
from tests.support.raw_fixtures import NO_CEILING, clean_rows, driving_file, render, write_raw

STAYS = driving_file("stays")  # T_MCO23B.csv


def stays_file(paths: Paths) -> Path:
    return paths.raw / STAYS


def assert_fails_cleanly(paths: Paths, *fragments: str, params: CleanParams = NO_CEILING) -> str:
    with pytest.raises(RawFileError) as info:
        run_clean(paths, params)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message
    assert not list(paths.clean.glob("*")) if paths.clean.exists() else True
    assert not list(paths.quarantine.glob("*")) if paths.quarantine.exists() else True
    assert not (paths.metrics / "cleaning.json").exists()
    return message


def test_missing_table_is_named_with_its_columns(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).unlink()
    assert_fails_cleanly(paths, "no file for T_MCOaaB", "DGN_PAL")


def test_a_year_without_its_c_table_is_named(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, stays=[{}, {"PMSI_YEAR": "2022"}])
    (paths.raw / "T_MCO23C.csv").unlink()
    assert_fails_cleanly(paths, "T_MCO23B has no T_MCO23C", "NIR_ANO_17")


def test_empty_file(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_bytes(b"")
    assert_fails_cleanly(paths, STAYS, "empty")


def test_header_only_optional_file_is_valid_with_zero_rows(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, diagnoses=[])
    metrics = run_clean(paths, NO_CEILING)
    assert metrics["tables"]["diagnoses"]["raw_rows"] == 0
    assert pl.read_parquet(paths.clean / "diagnoses.parquet").height == 0


@pytest.mark.parametrize("table", ["patients", "hospitals", "stays"])
@pytest.mark.parametrize("tail", ["", "\n\n", "\r\n \r\n"])
def test_header_only_required_table_is_a_structural_error(tmp_path: Path, table: str, tail: str) -> None:
    # IR_BEN_R, BE_IDE_R and T_MCOaaB are required: a header with no data row stops the stage
    paths = write_raw(tmp_path, **{table: []})
    path = paths.raw / driving_file(table)
    path.write_text(path.read_text(encoding="utf-8") + tail, encoding="utf-8")
    assert_fails_cleanly(paths, driving_file(table), "header but no data row")


def test_header_without_final_newline_is_a_structural_error(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_text(";".join(SOURCES["T_MCOaaB"].columns), encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "header but no data row")


def test_cr_only_line_endings_are_read(tmp_path: Path) -> None:
    # SAS on old systems writes CR-only files: read, not refused, and named in the format report
    paths = write_raw(tmp_path, stays=[{}, {"RSA_NUM": "2"}])
    for name in ("T_MCO23B.csv", "T_MCO23C.csv", "T_MCO23VALO.csv"):
        path = paths.raw / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    metrics = run_clean(paths, NO_CEILING)
    assert metrics["tables"]["stays"]["clean_rows"] == 2
    files = metrics["tables"]["stays"]["files"]
    assert files["T_MCO23B.csv"]["format"]["line_endings"] == "CR"
    assert metrics["tables"]["patients"]["files"]["IR_BEN_R.csv"]["format"]["line_endings"] == "LF"


def test_non_utf8_bytes_with_encoding_utf8(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    good = stays_file(paths).read_bytes()
    stays_file(paths).write_bytes(good + b"750000001;\xff;broken\n")
    assert_fails_cleanly(paths, STAYS, "not valid utf-8", f"offset {len(good) + 10}", "line 3",
                         params=CleanParams(encoding="utf-8", max_quarantine_share=1.0))


def test_latin1_file_is_detected_and_reported(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, hospitals=[{"IDE_ETA_NOM": "HÔPITAL SAINT-LOUIS"}])
    text = (paths.raw / "BE_IDE_R.csv").read_text(encoding="utf-8")
    (paths.raw / "BE_IDE_R.csv").write_bytes(text.encode("latin-1"))
    metrics = run_clean(paths, NO_CEILING)
    assert pl.read_parquet(paths.clean / "hospitals.parquet")["hospital_name"].to_list() == ["HÔPITAL SAINT-LOUIS"]
    assert metrics["tables"]["hospitals"]["files"]["BE_IDE_R.csv"]["format"]["encoding"] == "cp1252"


@pytest.mark.parametrize(("separator", "label"), [(",", ","), ("\t", "tab"), ("|", "|")])
def test_separator_is_detected_per_file(tmp_path: Path, separator: str, label: str) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_text(render("stays", [{}]).replace(";", separator), encoding="utf-8")
    metrics = run_clean(paths, NO_CEILING)
    files = metrics["tables"]["stays"]["files"]
    assert files[STAYS]["format"]["separator"] == label
    assert files["T_MCO23C.csv"]["format"]["separator"] == ";"
    assert metrics["tables"]["stays"]["clean_rows"] == 1


def test_quoted_comma_separated_file(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, hospitals=[{"IDE_ETA_NOM": "CHU"}])
    text = 'IDE_ETA_NUM,IDE_ETA_NOM,IDE_BDI_COD\n"750000001","CHU ""NORD"", PARIS","75013"\n'
    (paths.raw / "BE_IDE_R.csv").write_text(text, encoding="utf-8")
    metrics = run_clean(paths, NO_CEILING)
    assert pl.read_parquet(paths.clean / "hospitals.parquet")["hospital_name"].to_list() == ['CHU "NORD", PARIS']
    fmt = metrics["tables"]["hospitals"]["files"]["BE_IDE_R.csv"]["format"]
    assert (fmt["separator"], fmt["quoted"]) == (",", True)


def test_no_separator_in_header(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays_file(paths).write_text("ETA_NUM RSA_NUM\n1 2\n", encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "separator")


def test_missing_columns_are_named(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    text = render("stays", [{}]).replace("DGN_PAL", "DIAG").replace("GRG_GHM", "GHM")
    stays_file(paths).write_text(text, encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "missing required column(s)", "DGN_PAL", "GRG_GHM")


def test_duplicate_column_names(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    text = render("stays", [{}]).replace("ENT_PRV", "ENT_MOD", 1)
    stays_file(paths).write_text(text, encoding="utf-8")
    assert_fails_cleanly(paths, STAYS, "duplicate column", "ENT_MOD")


def test_dates_in_no_known_format_are_a_structural_error(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, stays=[{"RSA_NUM": "1", "EXE_SOI_DTD": "2023/01/03"},
                                       {"RSA_NUM": "2", "EXE_SOI_DTD": "2023/01/04"}])
    message = assert_fails_cleanly(paths, "T_MCO23C.csv", "EXE_SOI_DTD", "no known format")
    assert "2023/01" not in message  # no value echoed


def test_failed_run_removes_previous_outputs_and_leaves_no_temp_files(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    run_clean(paths, NO_CEILING)
    assert (paths.clean / "stays.parquet").exists()
    stays_file(paths).write_bytes(b"\xff\xfe")
    assert_fails_cleanly(paths, STAYS)


def test_table_names_any_case_txt_extension_extra_columns_any_order(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    (paths.raw / "BE_IDE_R.csv").unlink()
    columns = ("EXTRA", *(c.lower() for c in reversed(SOURCES["BE_IDE_R"].columns)))
    values = {"extra": "x", "ide_eta_num": "750000001", "ide_eta_nu8": "75000000", "ide_eta_nom": "CHU",
              "ide_bdi_cod": "75013", "ide_psh_cat": "1101"}
    text = ";".join(columns) + "\n" + ";".join(values[c.lower()] for c in columns) + "\n"
    (paths.raw / "be_ide_r.txt").write_text(text, encoding="utf-8")
    run_clean(paths, NO_CEILING)
    row = pl.read_parquet(paths.clean / "hospitals.parquet").row(0, named=True)
    assert row == {
        "hospital_id": "750000001",
        "hospital_name": "CHU",
        "postal_code": "75013",
        "department": "75",
        "category_code": "101",
        "category": "AP-HP/CHU",
        "beds": 900,
    }


def test_missing_optional_tables_degrade_with_a_message(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    for name in ("T_MCO23VALO.csv", "EXT_FINESS_SAE.csv", "IR_PHA_R.csv"):
        (paths.raw / name).unlink()
    metrics = run_clean(paths, NO_CEILING)
    stays = pl.read_parquet(paths.clean / "stays.parquet")
    assert stays["stay_cost"].to_list() == [None]  # kept, cost unknown
    assert pl.read_parquet(paths.clean / "hospitals.parquet")["category"].to_list() == ["Unknown"]
    assert pl.read_parquet(paths.clean / "dispensings.parquet")["atc_code"].to_list() == [None]
    notes = " ".join(n for t in metrics["tables"].values() for n in t["notes"])
    assert "T_MCOaaVALO for 2023 not in the extract (columns ETA_NUM, RSA_NUM, MNT_TOT_AM): stay_cost null" in notes
    assert "EXT_FINESS_SAE not in the extract" in notes
    assert "'Unknown'" in notes
    assert "IR_PHA_R not in the extract" in notes


def test_mass_loss_stops_the_stage_naming_table_share_and_reasons(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, stays=[{"RSA_NUM": str(i), "AGE_ANN": "150"} for i in range(1, 10)] + [{}])
    run_clean(paths, NO_CEILING)
    before = (paths.clean / "stays.parquet").read_bytes()
    with pytest.raises(MassLossError) as info:
        run_clean(paths, CleanParams(max_quarantine_share=0.05))
    message = str(info.value)
    assert message.startswith("stays: 90.0% of 10 rows quarantined")
    assert "impossible_age 90.0% (e.g. T_MCO23B.csv line 2)" in message
    assert (paths.clean / "stays.parquet").read_bytes() == before  # previous outputs intact


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
        dispensings=[{}, {"DCT_ORD_NUM": "2", "EXE_SOI_DTD": "x"}],
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
    # T_MCO23C: stay 1 clean, stay 2 with its quarantined stay, the duplicate dropped
    c_file = stays["files"]["T_MCO23C.csv"]
    assert (c_file["raw_rows"], c_file["clean_rows"], c_file["quarantined_rows"], c_file["duplicates_dropped"]) == (
        3, 1, 1, 1)
    for table in metrics["tables"].values():
        for f in table["files"].values():
            assert f["raw_rows"] == f["clean_rows"] + f["quarantined_rows"] + f["duplicates_dropped"]
    totals = metrics["totals"]
    for key in ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped"):
        assert totals[key] == sum(t[key] for t in metrics["tables"].values())
    assert totals["quarantined_rows"] == sum(totals["quarantine_reasons"].values())
    assert not [p for p in paths.root.rglob("*") if ".tmp" in p.name]


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    paths = dirty(tmp_path)
    outputs = [*paths.clean.glob("*.parquet"), *paths.quarantine.glob("*.parquet"), paths.metrics / "cleaning.json"]
    first = {p: p.read_bytes() for p in outputs}
    run_clean(paths, NO_CEILING)
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
    (paths.raw / driving_file("diagnoses")).write_text("\n".join(lines), encoding="utf-8")
    run_clean(paths, NO_CEILING)
    quarantine = pl.read_parquet(paths.quarantine / "diagnoses.parquet")
    assert quarantine["line_number"].to_list() == [3]
    assert quarantine["reason"].to_list() == ["unknown_stay"]
    assert pl.read_parquet(paths.clean / "diagnoses.parquet")["diagnosis_rank"].to_list() == [1, 3]
