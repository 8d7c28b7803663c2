"""Row-level rules of the clean stage: repairs, quarantine reasons, duplicates, precedence."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipelines.clean import REASONS, run_clean
from pipelines.config import CleanParams
from pipelines.contracts import SOURCES
from tests.support.raw_fixtures import DEFAULTS, FINESS, PATIENT, clean_rows, driving_file, render, write_raw


def stay(rsa: int, **overrides: str) -> dict[str, str]:
    return {"RSA_NUM": str(rsa), **overrides}


# --------------------------------------------------------------------------- repairs


@pytest.mark.parametrize("raw", ["93", "093", "93200", " 93 ", "93 "])
def test_department_formats_are_repaired_in_stays_and_patients(tmp_path: Path, raw: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, BDI_DEP=raw)], patients=[{"BEN_RES_DPT": raw}])
    assert out.clean("stays")["department"].to_list() == ["93"]
    assert out.clean("patients")["department"].to_list() == ["93"]
    repaired = int(raw != "93")
    assert out.table_metrics("stays")["repairs"] == {"decimal_comma": 0, "department_format": repaired, "icd_format": 0}
    assert out.table_metrics("patients")["repairs"] == {"department_format": repaired}


@pytest.mark.parametrize("raw", ["XX", "9", "00", "9320", "932000", "20"])
def test_unrecognisable_department_is_quarantined(tmp_path: Path, raw: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, BDI_DEP=raw)], patients=[{"BEN_RES_DPT": raw}])
    assert out.reasons("stays") == ["invalid_department"]
    assert out.reasons("patients") == ["invalid_department"]
    assert out.quarantine("stays")["detail"][0].startswith(f"BDI_DEP='{raw}'")


@pytest.mark.parametrize(("raw", "expected"), [("2A", "2A"), ("02b", "2B"), ("20100", "2A"), ("20200", "2B")])
def test_corsica_does_not_crash(tmp_path: Path, raw: str, expected: str) -> None:
    out = clean_rows(tmp_path, patients=[{"BEN_RES_DPT": raw}])
    assert out.clean("patients")["department"].to_list() == [expected]


def test_hospital_department_comes_from_postal_code(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        hospitals=[
            {},
            {"IDE_ETA_NUM": "930000002", "IDE_BDI_COD": "93200"},
            {"IDE_ETA_NUM": "940000003", "IDE_BDI_COD": "93200"},  # FINESS says 94
            {"IDE_ETA_NUM": "950000004", "IDE_BDI_COD": "95"},  # not a postal code
        ],
    )
    clean = out.clean("hospitals")
    assert clean["hospital_id"].to_list() == [FINESS, "930000002"]
    assert clean["department"].to_list() == ["75", "93"]
    assert clean["category"].to_list() == ["AP-HP/CHU", "AP-HP/CHU"]
    assert out.reasons("hospitals") == ["invalid_department", "invalid_department"]
    assert "IDE_BDI_COD='93200'" in out.quarantine("hospitals")["detail"][0]


@pytest.mark.parametrize(
    ("raw", "expected"), [("J441", "J441"), ("j44.0 ", "J440"), (" i50.9", "I509"), ("Z51.1", "Z511")]
)
def test_icd10_codes_are_repaired(tmp_path: Path, raw: str, expected: str) -> None:
    out = clean_rows(
        tmp_path,
        stays=[stay(1, DGN_PAL=raw, DGN_REL=raw)],
        diagnoses=[{"ASS_DGN": raw}],
    )
    stays = out.clean("stays")
    assert stays["icd10_code"].to_list() == [expected]
    assert stays["related_icd10_code"].to_list() == [expected]
    assert out.clean("diagnoses")["icd10_code"].to_list() == [expected]
    repaired = int(raw != expected)
    assert out.table_metrics("stays")["repairs"]["icd_format"] == 2 * repaired
    assert out.table_metrics("diagnoses")["repairs"] == {"icd_format": repaired}


@pytest.mark.parametrize("raw", ["123", "J4", "J44-0", "JJ44", "É440", "J44000000"])
def test_invalid_icd10_is_quarantined(tmp_path: Path, raw: str) -> None:
    out = clean_rows(
        tmp_path,
        stays=[stay(1), stay(2, DGN_PAL=raw), stay(3, DGN_REL=raw)],
        diagnoses=[{"ASS_DGN": raw}],
    )
    assert out.clean("stays")["rsa_num"].to_list() == [1]
    assert out.reasons("stays") == ["invalid_icd10", "invalid_icd10"]
    details = out.quarantine("stays")["detail"].to_list()
    assert details[0].startswith(f"DGN_PAL='{raw}'")
    assert details[1].startswith(f"DGN_REL='{raw}'")
    assert out.reasons("diagnoses") == ["invalid_icd10"]


def test_empty_optional_fields_become_null(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, DGN_REL="", ENT_PRV="", SOR_DES=" ")], patients=[{"BEN_DCD_DTE": ""}])
    row = out.clean("stays").row(0, named=True)
    assert row["related_icd10_code"] is None
    assert row["entry_source"] is None
    assert row["discharge_destination"] is None
    assert out.clean("patients")["death_date"].to_list() == [None]


def test_values_are_typed(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        stays=[stay(7, SOR_DES="1", ENT_PRV="5")],
        patients=[{"BEN_DCD_DTE": "21/12/2023", "BEN_SEX_COD": "2"}],
        diagnoses=[{"RSA_NUM": "7"}],
    )
    row = out.clean("stays").row(0, named=True)
    assert row["stay_id"] == f"{FINESS}-2023-7"
    assert row["admission_date"] == date(2023, 1, 3)
    assert row["discharge_date"] == date(2023, 1, 10)
    assert (row["length_of_stay"], row["age"], row["sex"], row["stay_cost"]) == (7, 72, 1, 3500.5)
    patient = out.clean("patients").row(0, named=True)
    assert patient["death_date"] == date(2023, 12, 21)
    assert (patient["patient_id"], patient["sex"], patient["birth_year"]) == (PATIENT, 2, 1950)
    assert out.clean("diagnoses")["stay_id"].to_list() == [f"{FINESS}-2023-7"]


@pytest.mark.parametrize(
    ("raw", "expected"), [("12,5", 12.5), ("1234,56", 1234.56), ("0,5", 0.5), ("99.9", 99.9), ("7", 7.0)]
)
def test_decimal_comma_is_repaired(tmp_path: Path, raw: str, expected: float) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, MNT_TOT_AM=raw)], dispensings=[{"BSE_REM_MNT": raw}])
    assert out.clean("stays")["stay_cost"].to_list() == [expected]
    assert out.clean("dispensings")["amount"].to_list() == [expected]
    comma = int("," in raw)
    assert out.table_metrics("stays")["repairs"]["decimal_comma"] == comma
    assert out.table_metrics("dispensings")["repairs"] == {"decimal_comma": comma}


@pytest.mark.parametrize("raw", ["abc", "1.234,56", "12,5,1", "nan", "inf", "1e3"])
def test_unparsable_decimal_is_invalid_number(tmp_path: Path, raw: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, MNT_TOT_AM=raw)], dispensings=[{"BSE_REM_MNT": raw}])
    assert out.reasons("stays") == ["invalid_number"]
    assert out.reasons("dispensings") == ["invalid_number"]


@pytest.mark.parametrize(("column", "raw"), [("AGE_ANN", "7x"), ("RSA_NUM", "1.5"), ("SEJ_NBJ", "99999999999")])
def test_unparsable_integer_is_invalid_number(tmp_path: Path, column: str, raw: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1), {**stay(2), column: raw}])
    assert out.reasons("stays") == ["invalid_number"]
    assert out.quarantine("stays")["detail"][0].startswith(f"{column}='{raw}'")


# --------------------------------------------------------------------------- quarantine rules


def test_discharge_before_admission_is_quarantined(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        stays=[
            stay(1, EXE_SOI_DTD="05/01/2023", EXE_SOI_DTF="04/01/2023"),
            stay(2, EXE_SOI_DTD="05/01/2023", EXE_SOI_DTF="05/01/2023", SEJ_NBJ="0"),  # same day: fine
        ],
    )
    assert out.clean("stays")["rsa_num"].to_list() == [2]
    q = out.quarantine("stays")
    assert q["reason"].to_list() == ["discharge_before_admission"]
    assert q["detail"][0].startswith("EXE_SOI_DTF='04/01/2023'")


def test_costs(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        stays=[
            stay(1, MNT_TOT_AM=""),
            stay(2, MNT_TOT_AM="-12,50"),
            stay(3, MNT_TOT_AM="0"),
            stay(4, MNT_TOT_AM="0,00"),
        ],
    )
    assert out.clean("stays")["stay_cost"].to_list() == [0.0, 0.0]
    assert out.reasons("stays") == ["missing_cost", "negative_cost"]
    assert out.quarantine("stays")["detail"][1].startswith("MNT_TOT_AM='-12,50'")


def test_unknown_finess_is_quarantined(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, stays=[stay(1), stay(2, ETA_NUM="999999999")])
    assert out.clean("stays")["rsa_num"].to_list() == [1]
    assert out.reasons("stays") == ["unknown_finess"]
    assert out.quarantine("stays")["detail"][0].startswith("ETA_NUM='999999999'")


@pytest.mark.parametrize(("age", "ok"), [("150", False), ("-1", False), ("116", False), ("0", True), ("115", True)])
def test_impossible_age(tmp_path: Path, age: str, ok: bool) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, AGE_ANN=age)])
    assert out.clean("stays").height == int(ok)
    assert out.reasons("stays") == ([] if ok else ["impossible_age"])


def test_age_bounds_come_from_params(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        CleanParams(min_age=18, max_age=100, max_quarantine_share=1.0),
        stays=[stay(1, AGE_ANN="17"), stay(2, AGE_ANN="18")],
    )
    assert out.clean("stays")["rsa_num"].to_list() == [2]
    assert out.reasons("stays") == ["impossible_age"]


@pytest.mark.parametrize(
    ("year", "ok"), [("1850", False), ("1899", False), ("1900", True), ("2023", True), ("2024", False), ("2090", False)]
)
def test_impossible_birth_year(tmp_path: Path, year: str, ok: bool) -> None:
    # the latest admission among clean stays is in 2023: later birth years are impossible
    out = clean_rows(tmp_path, patients=[{"BEN_NAI_ANN": year}])
    assert out.clean("patients").height == int(ok)
    assert out.reasons("patients") == ([] if ok else ["impossible_birth_year"])


@pytest.mark.parametrize("raw", ["31/02/2023", "2023-01-03", "3/1/2023", "03/01/23", "hier"])
def test_invalid_dates(tmp_path: Path, raw: str) -> None:
    # the file's format is dd/mm/yyyy (most values): a value not a date in it is a row error
    out = clean_rows(
        tmp_path,
        stays=[stay(1), stay(2), stay(3, EXE_SOI_DTD=raw)],
        patients=[{"BEN_NIR_PSA": "P1", "BEN_DCD_DTE": "02/02/2023"}, {"BEN_NIR_PSA": "P2", "BEN_DCD_DTE": raw}],
        dispensings=[{}, {"DCT_ORD_NUM": "2", "EXE_SOI_DTD": raw}],
    )
    assert out.reasons("stays") == ["invalid_date"]
    assert out.reasons("patients") == ["invalid_date"]
    assert out.reasons("dispensings") == ["invalid_date"]
    assert out.quarantine("stays")["detail"][0].startswith(f"EXE_SOI_DTD='{raw}'")


@pytest.mark.parametrize(
    ("written", "fmt"),
    [("03/01/2023", "dd/mm/yyyy"), ("03012023", "ddmmyyyy"), ("2023-01-03", "iso"),
     ("03JAN2023:00:00:00", "sas_datetime"), ("03jan2023:00:00:00", "sas_datetime")],
)
def test_date_format_is_detected_per_file(tmp_path: Path, written: str, fmt: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, EXE_SOI_DTD=written)])
    assert out.clean("stays")["admission_date"].to_list() == [date(2023, 1, 3)]
    c_file = out.table_metrics("stays")["files"]["T_MCO23C.csv"]
    assert c_file["format"]["date_formats"]["EXE_SOI_DTD"] == fmt


@pytest.mark.parametrize("sex", ["3", "M", "12"])
def test_invalid_sex(tmp_path: Path, sex: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, COD_SEX=sex)], patients=[{"BEN_SEX_COD": sex}])
    assert out.reasons("stays") == ["invalid_sex"]
    assert out.reasons("patients") == ["invalid_sex"]


@pytest.mark.parametrize("column", ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "DGN_PAL", "AGE_ANN", "BDI_DEP"])
def test_missing_required_value(tmp_path: Path, column: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1), {**stay(2), column: " "}])
    assert out.reasons("stays") == ["missing_value"]
    assert out.quarantine("stays")["detail"][0].startswith(f"{column}=' '")


def test_unknown_stay_in_diagnoses(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        stays=[stay(1), stay(2, MNT_TOT_AM="-1")],
        diagnoses=[{"RSA_NUM": "1"}, {"RSA_NUM": "01", "DGN_ASS_NUM": "2"}, {"RSA_NUM": "2"}, {"RSA_NUM": "3"}],
    )
    clean = out.clean("diagnoses")
    assert clean["stay_id"].to_list() == [f"{FINESS}-2023-1", f"{FINESS}-2023-1"]  # '01' is stay 1
    assert out.reasons("diagnoses") == ["unknown_stay", "unknown_stay"]  # quarantined stay 2, absent stay 3


def test_exact_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, stays=[stay(1), stay(2), stay(1), stay(1)], dispensings=[{}, {}])
    assert out.clean("stays")["rsa_num"].to_list() == [1, 2]
    m = out.table_metrics("stays")
    assert (m["raw_rows"], m["clean_rows"], m["quarantined_rows"], m["duplicates_dropped"]) == (4, 2, 0, 2)
    assert out.table_metrics("dispensings")["duplicates_dropped"] == 1


def test_same_key_with_different_content_is_duplicate_key(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, stays=[stay(1), stay(1, AGE_ANN="73")])
    assert out.clean("stays")["age"].to_list() == [72]
    q = out.quarantine("stays")
    assert q["reason"].to_list() == ["duplicate_key"]
    assert q["line_number"].to_list() == [3]
    assert "line 2" in q["detail"][0]


def test_malformed_line_keeps_its_text_and_line_number(tmp_path: Path) -> None:
    good = ";".join(DEFAULTS["stays"][c] for c in SOURCES["T_MCOaaB"].columns)
    short = good.rsplit(";", 1)[0]  # 12 fields of 13
    out = clean_rows(tmp_path, stays=[stay(1), short, good + ";extra", "", stay(2)])
    assert out.clean("stays")["rsa_num"].to_list() == [1, 2]
    q = out.quarantine("stays").filter(pl.col("source_file") == "T_MCO23B.csv")
    assert q["reason"].to_list() == ["malformed_line"] * 3
    assert q["line_number"].to_list() == [3, 4, 5]
    assert q["raw_line"].to_list() == [short, good + ";extra", ""]
    assert q["ETA_NUM"].to_list() == [None, None, None]
    assert q["PMSI_YEAR"].to_list() == ["2023"] * 3  # known from the file name


def test_first_reason_in_precedence_order_wins(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        stays=[
            stay(1, MNT_TOT_AM="-5", AGE_ANN="150", ETA_NUM="999999999"),
            stay(2, EXE_SOI_DTF="01/01/2020", AGE_ANN="150"),
            stay(3, DGN_PAL="??", BDI_DEP="XX", MNT_TOT_AM=""),
            stay(4, COD_SEX="", AGE_ANN="x"),
        ],
    )
    assert out.reasons("stays") == [
        "negative_cost",
        "discharge_before_admission",
        "invalid_department",
        "missing_value",
    ]
    assert REASONS.index("malformed_line") == 0
    assert REASONS.index("duplicate_key") == len(REASONS) - 2  # cross-row checks come last
    assert REASONS.index("encloses_stay") == len(REASONS) - 1


def test_crlf_line_endings_and_trailing_blank_lines(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, stays=[stay(1), stay(2)])
    text = render("stays", [stay(1), stay(2)]).replace("\n", "\r\n") + "\r\n\n"
    (paths.raw / driving_file("stays")).write_text(text, encoding="utf-8")
    metrics = run_clean(paths, CleanParams())
    assert metrics["tables"]["stays"]["raw_rows"] == 2
    assert metrics["tables"]["stays"]["clean_rows"] == 2


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("2", 2), ("0", 9), ("9", 9), ("7", 9), ("8", 9)])
def test_unknown_sex_codes_are_kept_as_9(tmp_path: Path, raw: str, expected: int) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, COD_SEX=raw)], patients=[{"BEN_SEX_COD": raw}])
    assert out.clean("stays")["sex"].to_list() == [expected]
    assert out.clean("patients")["sex"].to_list() == [expected]


@pytest.mark.parametrize("code", ["-1", "-2", "0", "6", "7", "8", "9"])
def test_every_exit_mode_of_the_nomenclature_is_accepted(tmp_path: Path, code: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, SOR_MOD=code, ENT_MOD=code, ENT_PRV="9", SOR_DES="0")])
    assert out.clean("stays")["discharge_mode"].to_list() == [code]


@pytest.mark.parametrize(("column", "raw"), [("SOR_MOD", "5"), ("ENT_MOD", "X"), ("ENT_PRV", "8"), ("SOR_DES", "-1")])
def test_codes_outside_the_nomenclature_are_quarantined_with_their_value(tmp_path: Path, column: str, raw: str) -> None:
    out = clean_rows(tmp_path, stays=[stay(1), stay(2, **{column: raw})])
    assert out.reasons("stays") == ["invalid_code"]
    q = out.quarantine("stays").row(0, named=True)
    assert q["detail"].startswith(f"{column}='{raw}': not a code of MS_")
    assert q["source_file"] == "T_MCO23B.csv"


def test_session_with_empty_sej_nbj_takes_its_length_from_the_dates(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, SEJ_NBJ="", EXE_SOI_DTF="03/01/2023", DGN_PAL="Z511")])
    assert out.clean("stays")["length_of_stay"].to_list() == [0]


def test_icd10_plus_extensions_are_kept(tmp_path: Path) -> None:
    out = clean_rows(tmp_path, stays=[stay(1, DGN_PAL="R53+0")], diagnoses=[{"ASS_DGN": "r53.+1"}])
    assert out.clean("stays")["icd10_code"].to_list() == ["R53+0"]
    assert out.clean("diagnoses")["icd10_code"].to_list() == ["R53+1"]


def test_any_finess_category_is_mapped(tmp_path: Path) -> None:
    out = clean_rows(
        tmp_path,
        hospitals=[{}, {"IDE_ETA_NUM": "750000002", "categetab": "696"},
                   {"IDE_ETA_NUM": "750000003", "nofinesset": "750000099"}],
        stays=[stay(1)],
    )
    clean = out.clean("hospitals")
    assert clean["category"].to_list() == ["AP-HP/CHU", "Other", "Unknown"]
    assert clean["category_code"].to_list() == ["101", "696", None]
