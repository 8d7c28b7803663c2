"""The extract-reading toolkit (pipelines/snds) on its own: discovery, formats, reading, joins."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipelines.contracts import SOURCES
from pipelines.snds.discover import SourceFile, classify, discover
from pipelines.snds.errors import ExtractError
from pipelines.snds.ingest import Extract, ingest_table
from pipelines.snds.read import MALFORMED, RAW, line_endings, read_source


@pytest.mark.parametrize(
    ("name", "source", "year"),
    [("T_MCO21B.csv", "T_MCOaaB", 2021), ("t_mco23b.txt", "T_MCOaaB", 2023), ("T_MCO22VALO.CSV", "T_MCOaaVALO", 2022),
     ("T_MCO24C.csv", "T_MCOaaC", 2024), ("ER_PRS_F_2022.csv", "ER_PRS_F", None), ("be_ide_r.txt", "BE_IDE_R", None),
     ("EXT_FINESS_SAE.csv", "EXT_FINESS_SAE", None)],
)
def test_tables_are_found_by_name_pattern(tmp_path: Path, name: str, source: str, year: int | None) -> None:
    found = classify(tmp_path / name)
    assert found is not None
    assert (found.source.name, found.year) == (source, year)


@pytest.mark.parametrize("name", ["T_MCO21B.parquet", "notes.csv", "T_MCO2B.csv", "T_MCO21BC.csv"])
def test_other_files_are_ignored(tmp_path: Path, name: str) -> None:
    assert classify(tmp_path / name) is None


def test_two_files_for_one_table_and_year_are_refused(tmp_path: Path) -> None:
    (tmp_path / "T_MCO21B.csv").write_text("ETA_NUM\n")
    (tmp_path / "t_mco21b.txt").write_text("ETA_NUM\n")
    with pytest.raises(ExtractError, match="several files for T_MCOaaB of 2021"):
        discover(tmp_path)


def _read(tmp_path: Path, name: str, data: bytes, encoding: str = "auto") -> pl.DataFrame:
    (tmp_path / name).write_bytes(data)
    file = classify(tmp_path / name)
    assert file is not None
    return read_source(file, encoding).rows


def test_quoted_fields_with_separators_quotes_and_a_broken_line(tmp_path: Path) -> None:
    text = ('IDE_ETA_NUM,IDE_BDI_COD,IDE_ETA_NOM\n"750000001","75013","CHU ""A"", B"\n'
            '750000002,75014,plain\n"750000003",75015,CH 5" nord\n"750000004"x,75016,y\n'
            '750000005,75017,"two\nlines"\n750000006,75018,z\n')
    rows = _read(tmp_path, "BE_IDE_R.csv", text.encode())
    names = rows.filter(~pl.col(MALFORMED))["IDE_ETA_NOM"].to_list()
    assert names == ['CHU "A", B', "plain", 'CH 5" nord', "two\nlines", "z"]
    assert rows[MALFORMED].to_list() == [False, False, False, True, False, False]
    assert rows[RAW][3] == '"750000004"x,75016,y'
    assert rows["_line"].to_list() == [2, 3, 4, 5, 6, 8]  # a record keeps its first line's number


def test_encodings(tmp_path: Path) -> None:
    text = "IDE_ETA_NUM;IDE_BDI_COD;IDE_ETA_NOM\n750000001;75013;HÔPITAL\n"
    assert _read(tmp_path, "BE_IDE_R.csv", text.encode("cp1252"))["IDE_ETA_NOM"].to_list() == ["HÔPITAL"]
    with pytest.raises(ExtractError, match="not valid utf-8: byte 0xd4"):
        _read(tmp_path, "BE_IDE_R.csv", text.encode("latin-1"), encoding="utf-8")


def test_cr_only_line_endings(tmp_path: Path) -> None:
    rows = _read(tmp_path, "BE_IDE_R.csv", b"IDE_ETA_NUM;IDE_BDI_COD\r750000001;75013\r750000002;75014\r")
    assert rows["IDE_ETA_NUM"].to_list() == ["750000001", "750000002"]
    assert rows["_line"].to_list() == [2, 3]


@pytest.mark.parametrize(
    ("data", "endings"),
    [(b"A;B\n1;2\n", "LF"), (b"A;B\r\n1;2\r\n", "CRLF"), (b"A;B\r1;2\r", "CR"), (b"A;B\n1;x\ry\n", "LF")],
)
def test_line_endings_are_reported(data: bytes, endings: str) -> None:
    assert line_endings(data.decode()) == endings


@pytest.mark.parametrize(
    ("values", "fmt"),
    [(["03/01/2023", "31/12/2024"], "dd/mm/yyyy"), (["03012023", "31122024"], "ddmmyyyy"),
     (["2023-01-03", "2024-12-31"], "iso"), (["03JAN2023:00:00:00", "31DEC2024:00:00:00"], "sas_datetime")],
)
def test_date_format_detection(tmp_path: Path, values: list[str], fmt: str) -> None:
    lines = ["BEN_NIR_PSA;BEN_SEX_COD;BEN_NAI_ANN;BEN_RES_DPT;BEN_DCD_DTE"]
    lines += [f"P{i};1;1950;75;{v}" for i, v in enumerate([*values, "", "garbage"])]
    (tmp_path / "IR_BEN_R.csv").write_text("\n".join(lines) + "\n")
    file = classify(tmp_path / "IR_BEN_R.csv")
    assert file is not None
    read = read_source(file)
    assert read.format.date_formats == {"BEN_DCD_DTE": fmt}
    assert read.rows["BEN_DCD_DTE__date"].to_list() == [date(2023, 1, 3), date(2024, 12, 31), None, None]


def test_a_date_column_in_no_known_format_is_structural(tmp_path: Path) -> None:
    text = "BEN_NIR_PSA;BEN_SEX_COD;BEN_NAI_ANN;BEN_RES_DPT;BEN_DCD_DTE\nP1;1;1950;75;2023/01/03\n"
    with pytest.raises(ExtractError, match=r"IR_BEN_R.csv: column BEN_DCD_DTE: 1 of 1 dates parse in no known"):
        _read(tmp_path, "IR_BEN_R.csv", text.encode())


def _pmsi(tmp_path: Path, b: list[str], c: list[str]) -> None:
    (tmp_path / "T_MCO23B.csv").write_text("\n".join(
        ["ETA_NUM;RSA_NUM;DGN_PAL;SOR_MOD;GRG_GHM;AGE_ANN;COD_SEX;ENT_MOD;BDI_DEP", *b]) + "\n")
    (tmp_path / "T_MCO23C.csv").write_text("\n".join(
        ["ETA_NUM;RSA_NUM;NIR_ANO_17;EXE_SOI_DTD;EXE_SOI_DTF", *c]) + "\n")
    (tmp_path / "IR_BEN_R.csv").write_text("BEN_NIR_PSA;BEN_SEX_COD;BEN_NAI_ANN;BEN_RES_DPT\n")
    (tmp_path / "BE_IDE_R.csv").write_text("IDE_ETA_NUM;IDE_BDI_COD\n")


def test_links_join_one_to_one_and_reject_what_cannot_join(tmp_path: Path) -> None:
    _pmsi(
        tmp_path,
        b=["750000001;0000000001;J441;8;04M052;70;1;8;93", "750000001;2;I10;8;05M092;71;2;8;93",
           "750000001;3;I10;8;x;1;1;8;93"],
        c=["750000001;1;P1;03/01/2023;04/01/2023",  # '1' joins '0000000001'
           "750000001;1;P9;03/01/2023;04/01/2023",  # a second C row for the same stay
           "750000001;7;P7;03/01/2023;04/01/2023",  # no B row
           "broken"],
    )
    table = ingest_table(Extract.open(tmp_path), "stays")
    assert table.rows["NIR_ANO_17"].to_list() == ["P1", None, None]
    assert table.rows["_unlinked"].to_list() == [None, "T_MCOaaC", "T_MCOaaC"]
    assert table.rows["PMSI_YEAR"].unique().to_list() == ["2023"]
    rejected = table.rejected.sort("_line")
    assert rejected["reason"].to_list() == ["duplicate_key", "orphan_row", "malformed_line"]
    assert rejected["_line"].to_list() == [3, 4, 5]
    assert "line 2 of T_MCO23C.csv" in rejected["detail"][0]
    assert any("T_MCOaaVALO for 2023 not in the extract" in n for n in table.notes)
    assert not table.rows["_valued"].any()


def test_required_tables_are_named(tmp_path: Path) -> None:
    _pmsi(tmp_path, b=[], c=[])
    (tmp_path / "IR_BEN_R.csv").unlink()
    with pytest.raises(ExtractError, match=r"no file for IR_BEN_R .*BEN_NIR_PSA"):
        Extract.open(tmp_path)


def test_source_file_names_follow_the_snds_convention() -> None:
    assert SOURCES["T_MCOaaVALO"].file_name(2023) == "T_MCO23VALO.csv"
    assert SourceFile(SOURCES["IR_BEN_R"], Path("x"), None).year is None


def test_dcir_keys_join_across_date_formats_and_leading_zeros(tmp_path: Path) -> None:
    _pmsi(tmp_path, b=[], c=[])
    keys = "DCT_ORD_NUM;FLX_DIS_DTD;FLX_EMT_NUM;FLX_EMT_ORD;FLX_EMT_TYP;FLX_TRT_DTD;ORG_CLE_NUM;PRS_ORD_NUM;REM_TYP_AFF"
    (tmp_path / "ER_PRS_F.csv").write_text(
        f"{keys};BEN_NIR_PSA;EXE_SOI_DTD;BSE_REM_MNT\n42;01/02/2023;17;1;1;01/02/2023;01751000;1;1;P1;15/01/2023;3,5\n")
    (tmp_path / "ER_PHA_F.csv").write_text(
        f"{keys};PHA_PRS_C13;PHA_ACT_QSN\n0042;2023-02-01;017;1;1;2023-02-01;01751000;1;1;3400930012345;2\n")
    table = ingest_table(Extract.open(tmp_path), "dispensings")
    assert table.rows["BEN_NIR_PSA"].to_list() == ["P1"]
    assert table.rows["_unlinked"].to_list() == [None]
    assert table.rejected.height == 0
