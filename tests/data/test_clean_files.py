"""Raw file formats and the stage's exit status: quoting, line endings, cascades, CLI exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.clean import run_clean
from pipelines.cli import main
from pipelines.config import CleanParams
from pipelines.contracts import RAW_TABLES, SOURCES
from tests.support.raw_fixtures import DEFAULTS, FINESS, clean_rows, driving_file, render, write_raw

PROJECT = Path(__file__).resolve().parents[2]
HOSPITALS = driving_file("hospitals")  # BE_IDE_R.csv
STAYS = driving_file("stays")  # T_MCO23B.csv


def hospital_line(**overrides: str) -> str:
    values = {**DEFAULTS["hospitals"], **overrides}
    return ";".join(values[c] for c in SOURCES["BE_IDE_R"].columns)


def run_cli(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    params = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    params["clean"]["max_quarantine_share"] = 1.0  # these files quarantine on purpose
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    code = main(["--root", str(root), "-q", "clean"])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- RFC 4180 quoting


def test_quoted_name_with_separator_is_clean(tmp_path: Path) -> None:
    # status: clean (was: malformed_line quarantining the hospital and all its stays)
    line = hospital_line(IDE_ETA_NOM='"Hôpital Saint-Louis; site Nord"')
    out = clean_rows(tmp_path, hospitals=[line], stays=[{}, {"RSA_NUM": "2"}])
    assert out.clean("hospitals")["hospital_name"].to_list() == ["Hôpital Saint-Louis; site Nord"]
    assert out.table_metrics("stays")["clean_rows"] == 2
    assert out.metrics["totals"]["quarantined_rows"] == 0


def test_doubled_quotes_and_newlines_inside_quotes(tmp_path: Path) -> None:
    # status: clean; a record spanning two lines keeps its first line's number, the next keeps its own
    lines = [
        hospital_line(IDE_ETA_NOM='"Clinique ""Les Lilas"""'),
        hospital_line(IDE_ETA_NUM="750000002", IDE_ETA_NOM='"CH\nsite B"'),
        hospital_line(IDE_ETA_NUM="750000003", IDE_BDI_COD="x"),
    ]
    out = clean_rows(tmp_path, hospitals=lines)
    names = out.clean("hospitals")["hospital_name"].to_list()
    assert names == ['Clinique "Les Lilas"', "CH\nsite B"]
    assert out.quarantine("hospitals")["line_number"].to_list() == [5]  # header 1, records at 2, 3-4, 5
    assert out.reasons("hospitals") == ["invalid_department"]


def test_bare_quote_inside_an_unquoted_field_is_text(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, hospitals=[hospital_line(IDE_ETA_NOM='CH 5" nord')])
    assert out.clean("hospitals")["hospital_name"].to_list() == ['CH 5" nord']


def test_quoted_field_with_wrong_field_count_is_malformed(tmp_path: Path) -> None:
    line = hospital_line(IDE_ETA_NOM='"A;B"') + ";extra"
    out = clean_rows(tmp_path, hospitals=[{}, line.replace(FINESS, "750000002")])
    assert out.reasons("hospitals") == ["malformed_line"]
    assert out.quarantine("hospitals")["raw_line"][0].startswith("750000002;")


def test_unclosed_quote_is_a_structural_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # exit 2, one line naming the file and the line where the quoted field starts
    paths = write_raw(tmp_path)
    text = render("hospitals", [{}]) + hospital_line(IDE_ETA_NUM="750000002", IDE_ETA_NOM='"never closed') + "\n"
    (paths.raw / HOSPITALS).write_text(text, encoding="utf-8")
    code, _, err = run_cli(tmp_path, capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert HOSPITALS in err
    assert "line 3" in err
    assert "quoting" in err


# --------------------------------------------------------------------------- line endings


def test_crlf_files_are_accepted(tmp_path: Path) -> None:
    # status: clean, same result as LF (a bare CR inside a line is covered in test_clean_structure)
    paths = write_raw(tmp_path, stays=[{}, {"RSA_NUM": "2"}])
    for path in paths.raw.iterdir():
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    metrics = run_clean(paths, CleanParams())
    assert metrics["totals"]["clean_rows"] == len(RAW_TABLES) + 1
    assert metrics["totals"]["quarantined_rows"] == 0


def test_cr_only_file_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # old SAS exports end lines with CR only: read like LF (the SNDS-layout reader decodes and splits them)
    paths = write_raw(tmp_path)
    (paths.raw / STAYS).write_text(render("stays", [{}]).replace("\n", "\r"), encoding="utf-8")
    code, out, _ = run_cli(tmp_path, capsys)
    assert code == 0
    assert json.loads(out)["quarantined_rows"] == 0


def test_header_only_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_raw(tmp_path, stays=[])
    code, _, err = run_cli(tmp_path, capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert f"{STAYS}: header but no data row" in err


def test_clean_run_exits_0_with_the_cascade_in_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_raw(tmp_path, stays=[{}, {"RSA_NUM": "2", "MNT_TOT_AM": "-1"}], diagnoses=[{}, {"RSA_NUM": "2"}])
    code, out, _ = run_cli(tmp_path, capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["quarantined_rows"] == 2
    assert summary["cascade_rows"] == 1


# --------------------------------------------------------------------------- cascades


def test_cascade_from_a_quarantined_hospital_is_counted(tmp_path: Path) -> None:
    # a malformed hospital line: its stays are unknown_finess *because* of it, and their diagnoses too
    bad = hospital_line(IDE_ETA_NUM="750000002", IDE_ETA_NOM="A;B")  # unquoted ';' -> malformed
    out = clean_rows(
        tmp_path,
        hospitals=[{}, bad],
        stays=[{}, {"ETA_NUM": "750000002"}, {"ETA_NUM": "750000002", "RSA_NUM": "2"}, {"ETA_NUM": "750000009"}],
        diagnoses=[{}, {"ETA_NUM": "750000002"}, {"RSA_NUM": "7"}],
    )
    stays, diagnoses = out.table_metrics("stays"), out.table_metrics("diagnoses")
    assert stays["quarantine_reasons"]["unknown_finess"] == 3
    assert stays["cascade"] == {"unknown_finess": 2}  # the third FINESS is truly unknown
    assert diagnoses["quarantine_reasons"]["unknown_stay"] == 2
    assert diagnoses["cascade"] == {"unknown_stay": 1}  # RSA 7 is truly unknown
    assert out.metrics["totals"]["cascade_rows"] == 3
    assert out.metrics["totals"]["cascade"] == {"unknown_finess": 2, "unknown_stay": 1}
    details = out.quarantine("stays")["detail"].to_list()
    assert sum("(the hospital row is quarantined)" in d for d in details) == 2
    for m in (stays, diagnoses):
        assert m["raw_rows"] == m["clean_rows"] + m["quarantined_rows"] + m["duplicates_dropped"]


def test_duplicate_key_parent_is_not_a_cascade(tmp_path: Path) -> None:
    # the parent's first copy is clean: its children are clean, nothing cascades
    out = clean_rows(tmp_path, stays=[{}, {"AGE_ANN": "73"}], diagnoses=[{}])
    assert out.reasons("stays") == ["duplicate_key"]
    assert out.table_metrics("diagnoses")["clean_rows"] == 1
    assert out.metrics["totals"]["cascade_rows"] == 0


# --------------------------------------------------------------------------- the extract period


def test_extract_period_is_the_warehouse_one(tmp_path: Path) -> None:
    from datetime import date

    import yaml

    from pipelines.config import Params, ParamsError, load_params

    project = load_params(PROJECT / "params.yaml")
    assert project.clean.extract.start_date == project.warehouse.data_start_date
    assert project.clean.extract.end_date == project.warehouse.data_end_date
    assert Params.model_validate(project.model_dump()) == project  # a dump round-trips

    raw = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    raw["warehouse"]["data_end_date"] = "2023-06-30"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_params(path).clean.extract.end_date == date(2023, 6, 30)

    raw["clean"]["extract"] = {"start_date": "2021-01-01", "end_date": "2024-12-31"}  # a second source
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ParamsError, match=r"clean\.extract must equal warehouse"):
        load_params(path)

    del raw["clean"]["extract"]
    raw["warehouse"]["data_end_date"] = "soon"  # clean cannot run without its bound: refused up front
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ParamsError, match="the extract period"):
        load_params(path)


def test_extract_end_from_params_moves_the_bound(tmp_path: Path) -> None:
    from datetime import date

    from pipelines.config import ExtractPeriod

    params = CleanParams(extract=ExtractPeriod(start_date=date(2021, 1, 1), end_date=date(2022, 12, 31)),
                         max_quarantine_share=1.0)
    paths = write_raw(tmp_path, stays=[{}, {"RSA_NUM": "2", "EXE_SOI_DTD": "03/01/2022", "EXE_SOI_DTF": "10/01/2022"}])
    metrics = run_clean(paths, params)
    assert metrics["tables"]["stays"]["quarantine_reasons"]["date_outside_extract"] == 1  # the 2023 stay
    assert metrics["tables"]["stays"]["clean_rows"] == 1
