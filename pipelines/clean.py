"""Clean stage: an SNDS extract (data/raw) -> typed clean tables, quarantine and metrics.

Inputs: the extract folder, read by the ``pipelines.snds`` toolkit: tables found by name
(``contracts.SOURCES``), each file's encoding, separator, quoting and date formats detected,
yearly PMSI tables stacked with their year, SNDS tables joined into the five logical tables
of ``contracts.RAW_TABLES`` (all values text, with file and line provenance). Outputs:

* ``data/clean/<table>.parquet``: exactly ``contracts.CLEAN_SCHEMAS[table]``, sorted by key.
* ``data/quarantine/<table>.parquet``: the raw columns of ``RawTable.columns`` as text
  (values as written, unstripped), then ``source_file``, ``line_number`` (1-based, header =
  line 1; a quoted record spanning lines has its first line's number), ``raw_line`` (malformed
  lines only, whose columns are null), ``reason`` and ``detail``; linked rows that could not be
  joined (``orphan_row``, ...) are there too, under their own file.
* ``reports/metrics/cleaning.json``: per table and per file counts, reasons, repairs, cascades,
  formats and the notes on missing optional tables.

Structural problems raise ``RawFileError`` (exit code 2, one line naming file and fault);
a table with more than ``max_quarantine_share`` of its rows quarantined raises ``MassLossError``.

Processing of one table (vectorised Polars expressions over the text columns): clean columns
are derived (repairs: department formats, ICD-10 formats, decimal commas, empty -> null);
each row gets at most one quarantine reason, the first failing check in ``REASONS`` order
(so ``raw_rows == clean_rows + quarantined_rows + duplicates_dropped``); cross-row checks
(``duplicate_key``, ``encloses_stay``) only look at rows passing every other check. Every
error-level dbt test raw data can reach has its rule here (contracts.DBT_TEST_REASONS). Date
bounds come from the extract period (``CleanParams.extract``).

Tables are cleaned in the order hospitals, stays, diagnoses, patients, dispensings:
stays are checked against clean hospitals (``unknown_finess``), diagnoses against clean
stays (``unknown_stay``), and a patient's birth year must not exceed the latest admission
year among clean stays (``impossible_birth_year``). A child row whose parent is quarantined
is a cascade (counted apart in the metrics).

Repairs are counted per repaired cell of rows that end up clean.

A table whose raw files (driving + linked) exceed ``clean.partition_mb`` is cleaned in that
many MiB-sized hash partitions (``clean_in_parts``; ``pipelines.snds.spill``), with the same
rules and the same outputs: memory is bounded by a partition, not by the table.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from pipelines import metrics_io
from pipelines.config import CleanParams, ExtractPeriod, Paths
from pipelines.contracts import (
    CLEAN_SCHEMAS,
    DCIR_KEYS,
    EXIT_MODES,
    HOSPITAL_CATEGORIES,
    OTHER_CATEGORY,
    PMSI_RETURN_CODES,
    PMSI_YEAR_COLUMN,
    PROVENANCES,
    QUARANTINE_EXTRA_COLUMNS,
    RAW_TABLES,
    SEX_CODE_MAP,
    SOURCES,
    UNKNOWN_CATEGORY,
    RawTable,
    stay_id_expr,
)
from pipelines.snds.discover import SourceFile
from pipelines.snds.errors import ExtractError
from pipelines.snds.ingest import DETAIL, REASON, UNLINKED, VALUED, Extract, Ingested, ingest_table, link_file_col
from pipelines.snds.outputs import merge_metrics, write_sorted
from pipelines.snds.read import FILE, LINE, MALFORMED, RAW, SourceRows, date_column, read_source
from pipelines.snds.spill import SpilledFile, read_part, spill_file

# Quarantine reasons in precedence order: a row failing several checks gets the first.
REASONS: tuple[str, ...] = (
    "malformed_line",
    "orphan_row",
    "unlinked_row",
    "missing_value",
    "invalid_number",
    "invalid_date",
    "invalid_sex",
    "invalid_department",
    "invalid_icd10",
    "invalid_code",
    "missing_cost",
    "negative_cost",
    "negative_value",
    "discharge_before_admission",
    "negative_length_of_stay",
    "length_of_stay_mismatch",
    "impossible_age",
    "impossible_birth_year",
    "unknown_finess",
    "unknown_stay",
    "date_outside_extract",
    "duplicate_key",
    "encloses_stay",  # cross-row, among rows passing every other check
)
# Repairs counted in the metrics (contracts.CORRUPTION_KINDS with outcome "repaired").
REPAIR_KINDS: tuple[str, ...] = ("department_format", "icd_format", "decimal_comma")
# Cleaning order: each table may only depend on tables cleaned before it.
TABLE_ORDER: tuple[str, ...] = ("hospitals", "stays", "diagnoses", "patients", "dispensings")

VALID_DEPARTMENTS: frozenset[str] = frozenset(
    [f"{d:02d}" for d in range(1, 96) if d != 20] + ["2A", "2B"] + [f"97{d}" for d in range(1, 7)]
)
# ICD-10 without dot; the French CIM-10 (ATIH) extends codes with '+' (e.g. R53+0).
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9A-Z+]{0,4}$"
_INT_PATTERN = r"^[+-]?[0-9]+$"
_DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
_LINE = LINE
_FIRST_LINE = "_first_line"
_RAW = RAW
_REASON = REASON
_DETAIL = DETAIL


class RawFileError(ExtractError):
    """A raw file or the extract cannot be read as a whole (missing table, bad header, dates ...)."""


class MassLossError(RawFileError):
    """Too large a share of a table was quarantined: the run stops rather than go on with the rest."""


# --------------------------------------------------------------------------- reading


def read_extract(folder: Path, encoding: str) -> Extract:
    """Discover the extract's tables; structural problems become RawFileError (exit code 2)."""
    try:
        return Extract.open(folder, encoding)
    except RawFileError:
        raise
    except ExtractError as exc:
        raise RawFileError(str(exc)) from exc


def ingest(extract: Extract, name: str) -> Ingested:
    try:
        return ingest_table(extract, name)
    except RawFileError:
        raise
    except ExtractError as exc:
        raise RawFileError(str(exc)) from exc


# --------------------------------------------------------------------------- values


def text(col: str) -> pl.Expr:
    """The stripped value, null when empty."""
    value = pl.col(col).str.strip_chars()
    return pl.when(value != "").then(value)


def parse_int(col: str, dtype: pl.DataType) -> pl.Expr:
    """An integer of the given dtype; null when empty, not an integer or out of range."""
    value = text(col)
    valid = pl.when(value.str.contains(_INT_PATTERN)).then(value)
    return valid.cast(pl.Int64, strict=False).cast(dtype, strict=False)


def parse_decimal(col: str) -> pl.Expr:
    """A Float64 accepting a French decimal comma ('1234,56'); null when not a number."""
    value = text(col).str.replace(",", ".", literal=True)
    return pl.when(value.str.contains(_DECIMAL_PATTERN)).then(value).cast(pl.Float64, strict=False)


def parse_date(col: str) -> pl.Expr:
    """The date of a raw date column, parsed by ingest in the format detected for its file."""
    return pl.col(date_column(col))


def normalize_department(expr: pl.Expr) -> pl.Expr:
    """'93', '093', ' 93 ', '93200' (postal code) -> '93'; null when unrecognisable."""
    value = expr.str.strip_chars().str.to_uppercase()
    corsica = pl.when(value.str.slice(2, 1).is_in(["0", "1"])).then(pl.lit("2A")).otherwise(pl.lit("2B"))
    code = (
        pl.when(value.str.contains(r"^([0-9]{2}|2[AB]|97[0-9])$"))
        .then(value)
        .when(value.str.contains(r"^0([0-9]{2}|2[AB])$"))
        .then(value.str.slice(1))
        .when(value.str.contains(r"^97[0-9]{3}$"))
        .then(value.str.slice(0, 3))
        .when(value.str.contains(r"^20[0-9]{3}$"))
        .then(corsica)
        .when(value.str.contains(r"^[0-9]{5}$"))
        .then(value.str.slice(0, 2))
    )
    return pl.when(code.is_in(sorted(VALID_DEPARTMENTS))).then(code)


def postal_department(col: str) -> pl.Expr:
    """The department of a 5-digit postal code; null when not a postal code."""
    value = text(col)
    return pl.when(value.str.contains(r"^[0-9]{5}$")).then(normalize_department(value))


def parse_sex(col: str) -> pl.Expr:
    """1 male, 2 female, 9 unknown (PMSI 7/8/9, DCIR 0/9); null when not a sex code."""
    return text(col).replace_strict(SEX_CODE_MAP, default=None, return_dtype=pl.Int8)


def repair_icd10(col: str) -> pl.Expr:
    """'j44.0 ' -> 'J440' (spaces and dots removed, upper case); null when empty."""
    return text(col).str.replace_all(r"[\s.]", "").str.to_uppercase()


def changed(raw_col: str, clean_col: str) -> pl.Expr:
    """1 where the clean value differs from the raw text (a repair), else 0."""
    return (pl.col(raw_col) != pl.col(clean_col)).fill_null(False).cast(pl.Int64)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Check:
    """One quarantine rule: rows where ``failed`` is true get ``reason`` and ``detail``."""

    reason: str
    failed: pl.Expr
    detail: pl.Expr


def quoted(col: str) -> pl.Expr:
    """ "COL='value'" for a detail message."""
    return pl.format(f"{col}='{{}}'", pl.col(col))


def missing_value(cols: Sequence[str]) -> list[Check]:
    """Required fields that are empty."""
    return [
        Check("missing_value", text(c).is_null(), pl.format(f"{c}='{{}}': required value is empty", pl.col(c)))
        for c in cols
    ]


def invalid_number(pairs: Mapping[str, str]) -> list[Check]:
    """Raw column (key) non-empty but its parsed clean column (value) is null."""
    return [
        Check(
            "invalid_number",
            text(raw).is_not_null() & pl.col(parsed).is_null(),
            pl.format(f"{raw}='{{}}': not a number of the expected type/range", pl.col(raw)),
        )
        for raw, parsed in pairs.items()
    ]


def invalid_date(pairs: Mapping[str, str]) -> list[Check]:
    """Raw date column (key) non-empty but not a date in its file's detected format."""
    return [
        Check(
            "invalid_date",
            text(raw).is_not_null() & pl.col(parsed).is_null(),
            pl.format(f"{raw}='{{}}': not a valid date in the format detected for its file", pl.col(raw)),
        )
        for raw, parsed in pairs.items()
    ]


def invalid_sex(raw: str, parsed: str) -> Check:
    return Check(
        "invalid_sex",
        pl.col(parsed).is_null(),
        pl.format(f"{raw}='{{}}': sex must be 1, 2 or an unknown code (0, 7, 8, 9)", pl.col(raw)),
    )


def invalid_code(raw: str, parsed: str, codes: Sequence[str], nomenclature: str) -> Check:
    """A PMSI code outside its nomenclature (the dbt seeds hold the same codes)."""
    return Check(
        "invalid_code",
        pl.col(parsed).is_not_null() & ~pl.col(parsed).is_in(list(codes)),
        pl.format(f"{raw}='{{}}': not a code of {nomenclature}", pl.col(raw)),
    )


def negative_value(raw: str, parsed: str) -> Check:
    return Check("negative_value", pl.col(parsed) < 0, pl.format(f"{raw}='{{}}': must not be negative", pl.col(raw)))


def outside_extract(raw: str, parsed: str, period: ExtractPeriod, *, before_start: bool) -> Check:
    """A date after the extract's end (or, for admissions, before its start): a typo like 2099."""
    start, end = f"{period.start_date:%d/%m/%Y}", f"{period.end_date:%d/%m/%Y}"
    failed = pl.col(parsed) > period.end_date
    bound = f"after the extract's end {end}"
    if before_start:
        failed = failed | (pl.col(parsed) < period.start_date)
        bound = f"outside the extract period [{start}, {end}]"
    return Check("date_outside_extract", failed, pl.format(f"{raw}='{{}}': {bound}", pl.col(raw)))


def stay_outside_extract(period: ExtractPeriod) -> Check:
    """A stay that does not touch the extract: admitted after its end or discharged before its start.

    A stay admitted before the end and discharged after it is kept (in progress at the end of
    the extract; the warehouse censors it), as a stay admitted before the start and discharged in it.
    """
    start, end = f"{period.start_date:%d/%m/%Y}", f"{period.end_date:%d/%m/%Y}"
    return Check(
        "date_outside_extract",
        (pl.col("admission_date") > period.end_date) | (pl.col("discharge_date") < period.start_date),
        pl.format(
            f"EXE_SOI_DTD='{{}}', EXE_SOI_DTF='{{}}': the stay lies outside the extract period [{start}, {end}]",
            pl.col("EXE_SOI_DTD"),
            pl.col("EXE_SOI_DTF"),
        ),
    )


def invalid_department(raw: str, parsed: str) -> Check:
    return Check(
        "invalid_department",
        pl.col(parsed).is_null(),
        pl.format(f"{raw}='{{}}': not a department code or postal code", pl.col(raw)),
    )


def invalid_icd10(raw: str, repaired: str, *, required: bool) -> Check:
    value = pl.col(repaired)
    bad = ~value.str.contains(ICD10_PATTERN)
    failed = bad.fill_null(required)
    return Check(
        "invalid_icd10",
        failed,
        pl.format(f"{raw}='{{}}': not an ICD-10 code after repair ('{{}}')", pl.col(raw), value.fill_null("")),
    )


def key_detail(cols: Sequence[str], explanation: str) -> pl.Expr:
    parts = [quoted(c) for c in cols]
    return pl.concat_str([pl.concat_str(parts, separator=", "), pl.lit(f": {explanation}")])


def by_precedence(checks: Sequence[Check]) -> list[Check]:
    """Checks in ``REASONS`` order (stable: a table's own order within one reason)."""
    return sorted(checks, key=lambda c: REASONS.index(c.reason))


def first_failing(checks: Sequence[Check], value: Callable[[Check], pl.Expr]) -> pl.Expr:
    """``value`` of the first failing check, null when none fails."""
    chain: Any = pl
    for check in by_precedence(checks):
        chain = chain.when(check.failed.fill_null(False)).then(value(check))
    if chain is pl:
        return pl.lit(None, pl.String)
    result: pl.Expr = chain.otherwise(pl.lit(None, pl.String))
    return result


def assign_reasons(frame: pl.LazyFrame, checks: Sequence[Check]) -> pl.LazyFrame:
    """Add ``reason``: the first failing check's, null for a row passing every check."""
    return frame.with_columns(first_failing(checks, lambda c: pl.lit(c.reason)).alias(_REASON))


def flag_duplicate_keys(frame: pl.LazyFrame, key: Sequence[str]) -> pl.LazyFrame:
    """Among rows not yet quarantined, a key already used by an earlier line -> duplicate_key."""
    ok = pl.col(_REASON).is_null()
    first = pl.when(ok).then(pl.col(_LINE)).min().over(list(key))
    dup = ok & (pl.col(_LINE) > first).fill_null(False)
    return frame.with_columns(
        pl.when(dup).then(pl.lit("duplicate_key")).otherwise(pl.col(_REASON)).alias(_REASON),
        first.alias(_FIRST_LINE),
    )


_LAST_DAY = pl.lit(date(9999, 12, 31))


def flag_enclosing_stays(frame: pl.LazyFrame) -> pl.LazyFrame:
    """A stay discharged after a later-admitted stay of the same patient is discharged -> encloses_stay.

    Stays are ordered as the warehouse's pathway orders them (admission, discharge, stay id); a
    stay nested inside another one breaks its ``previous_discharge_date`` <= ``discharge_date``
    test. The enclosing stay is the one quarantined: a typo in a discharge date (01/01/2099 for
    2023) makes one stay swallow the patient's later stays.
    """
    ok = pl.col(_REASON).is_null()
    discharge = pl.when(ok).then(pl.col("discharge_date")).otherwise(_LAST_DAY)
    # Ordered within each patient only: the wide frame is never sorted (its row order does not matter).
    later_min = discharge.reverse().cum_min().reverse().shift(-1).over(
        "patient_id", order_by=["admission_date", "discharge_date", "stay_id", FILE, _LINE], nulls_last=True)
    encloses = ok & (pl.col("discharge_date") > later_min).fill_null(False)
    return frame.with_columns(
        pl.when(encloses).then(pl.lit("encloses_stay")).otherwise(pl.col(_REASON)).alias(_REASON))


def describe(quarantined: pl.DataFrame, checks: Sequence[Check], raw_key: Sequence[str]) -> pl.DataFrame:
    """Add ``detail`` to quarantined rows only (building messages for every row is costly)."""
    dup_detail = pl.concat_str([key_detail(raw_key, "key already used by line "), pl.col(_FIRST_LINE).cast(pl.String)])
    detail = (
        pl.when(pl.col(_REASON) == "duplicate_key")
        .then(dup_detail)
        .when(pl.col(_REASON) == "encloses_stay")
        .then(pl.lit("EXE_SOI_DTF: discharged after a later-admitted stay of the same patient is discharged"))
        .otherwise(first_failing(checks, lambda c: c.detail))
    )
    return quarantined.with_columns(detail.alias(_DETAIL))


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Context:
    """What a table's rules need from tables cleaned before it."""

    params: CleanParams
    hospital_ids: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    stay_ids: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    max_admission_year: int | None = None
    # Keys of quarantined parent rows: a child row pointing at one is a cascade, not a truly unknown key.
    quarantined_hospital_ids: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))
    quarantined_stay_ids: pl.Series = field(default_factory=lambda: pl.Series([], dtype=pl.String))


@dataclass(frozen=True)
class TableRules:
    """How one raw table becomes its clean table."""

    columns: dict[str, pl.Expr]  # clean column -> expression over the raw columns
    checks: list[Check]  # may refer to the clean columns
    key: tuple[str, ...]  # clean columns identifying a row (sort order too)
    repairs: dict[str, pl.Expr]  # repair kind -> repaired cells in the row
    # reason -> true where that reason is caused by a quarantined parent row in another table
    cascade: dict[str, pl.Expr] = field(default_factory=dict)
    id_column: str | None = None  # the column child tables refer to (stay_id, hospital_id)
    cross_row: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None  # after duplicate keys


def unlinked_check() -> Check:
    """A driving row whose required linked table has no row for its key (e.g. no T_MCOaaC row)."""
    return Check("unlinked_row", pl.col(UNLINKED).is_not_null(),
                 pl.format("no {} row with this key in the extract", pl.col(UNLINKED)))


def hospitals_rules(ctx: Context) -> TableRules:
    finess_dep = pl.col("hospital_id").str.slice(0, 2)
    mismatch = Check(
        "invalid_department",
        pl.col("department").str.slice(0, 2) != finess_dep,
        pl.format(
            "IDE_BDI_COD='{}': postal code department does not match FINESS IDE_ETA_NUM='{}'",
            pl.col("IDE_BDI_COD"),
            pl.col("IDE_ETA_NUM"),
        ),
    )
    category = text("categetab")
    return TableRules(
        columns={
            "hospital_id": text("IDE_ETA_NUM"),
            "hospital_name": text("IDE_ETA_NOM"),
            "postal_code": text("IDE_BDI_COD"),
            "department": postal_department("IDE_BDI_COD"),
            "category_code": category,
            # Any FINESS category: the four analytic groups, 'Other', or 'Unknown' without FINESS/SAE facts.
            "category": pl.when(category.is_null()).then(pl.lit(UNKNOWN_CATEGORY)).otherwise(
                category.replace_strict(HOSPITAL_CATEGORIES, default=OTHER_CATEGORY, return_dtype=pl.String)
            ),
            "beds": parse_int("lit_mco", pl.Int32()),
        },
        checks=[
            *missing_value(["IDE_ETA_NUM", "IDE_BDI_COD"]),
            *invalid_number({"lit_mco": "beds"}),
            invalid_department("IDE_BDI_COD", "department"),
            negative_value("lit_mco", "beds"),
            mismatch,
        ],
        key=("hospital_id",),
        repairs={},
        id_column="hospital_id",
    )


def stays_rules(ctx: Context) -> TableRules:
    p = ctx.params
    cost_raw = text("MNT_TOT_AM")
    valued = pl.col(VALUED).fill_null(False)
    admission, discharge = parse_date("EXE_SOI_DTD"), parse_date("EXE_SOI_DTF")
    # SEJ_NBJ duplicates the dates: a disagreement cannot tell which side is the typo, so quarantine.
    stay_days = (pl.col("discharge_date") - pl.col("admission_date")).dt.total_days()
    hospital_quarantined = pl.col("hospital_id").is_in(ctx.quarantined_hospital_ids.implode()).fill_null(False)
    hospital_note = pl.when(hospital_quarantined).then(pl.lit(" (the hospital row is quarantined)")).otherwise(
        pl.lit("")
    )
    return TableRules(
        columns={
            "stay_id": stay_id_expr(text("ETA_NUM"), parse_int(PMSI_YEAR_COLUMN, pl.Int16()),
                                    parse_int("RSA_NUM", pl.Int64())),
            "hospital_id": text("ETA_NUM"),
            "pmsi_year": parse_int(PMSI_YEAR_COLUMN, pl.Int16()),
            "rsa_num": parse_int("RSA_NUM", pl.Int64()),
            "patient_id": text("NIR_ANO_17"),
            "admission_date": admission,
            "discharge_date": discharge,
            # SEJ_NBJ is empty for sessions (schema): the dates give the length then.
            "length_of_stay": pl.coalesce(
                parse_int("SEJ_NBJ", pl.Int32()),
                pl.when(text("SEJ_NBJ").is_null()).then((discharge - admission).dt.total_days().cast(pl.Int32)),
            ),
            "icd10_code": repair_icd10("DGN_PAL"),
            "related_icd10_code": repair_icd10("DGN_REL"),
            "entry_mode": text("ENT_MOD"),
            "entry_source": text("ENT_PRV"),
            "discharge_mode": text("SOR_MOD"),
            "discharge_destination": text("SOR_DES"),
            "ghm_code": text("GRG_GHM"),
            "age": parse_int("AGE_ANN", pl.Int16()),
            "sex": parse_sex("COD_SEX"),
            "department": normalize_department(pl.col("BDI_DEP")),
            "stay_cost": parse_decimal("MNT_TOT_AM"),
            "pmsi_return_codes_ok": pl.all_horizontal(
                [text(c).is_null() | (text(c) == "0") for c in PMSI_RETURN_CODES]
            ),
        },
        checks=[
            unlinked_check(),
            *missing_value(
                ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF", "DGN_PAL", "ENT_MOD",
                 "SOR_MOD", "GRG_GHM", "AGE_ANN", "COD_SEX", "BDI_DEP"]
            ),
            *invalid_number(
                {"RSA_NUM": "rsa_num", "SEJ_NBJ": "length_of_stay", "AGE_ANN": "age", "MNT_TOT_AM": "stay_cost"}
            ),
            *invalid_date({"EXE_SOI_DTD": "admission_date", "EXE_SOI_DTF": "discharge_date"}),
            invalid_sex("COD_SEX", "sex"),
            invalid_department("BDI_DEP", "department"),
            invalid_icd10("DGN_PAL", "icd10_code", required=True),
            invalid_icd10("DGN_REL", "related_icd10_code", required=False),
            invalid_code("ENT_MOD", "entry_mode", EXIT_MODES, "MS_SOR_V (entry modes)"),
            invalid_code("SOR_MOD", "discharge_mode", EXIT_MODES, "MS_SOR_V (exit modes)"),
            invalid_code("ENT_PRV", "entry_source", PROVENANCES, "MS_PRV_V (provenance)"),
            invalid_code("SOR_DES", "discharge_destination", PROVENANCES, "MS_PRV_V (destination)"),
            Check("missing_cost", valued & cost_raw.is_null(),
                  pl.format("{}: stay valuation is empty or has no T_MCOaaVALO row", quoted("MNT_TOT_AM"))),
            Check(
                "negative_cost",
                pl.col("stay_cost") < 0,
                pl.format("MNT_TOT_AM='{}': stay valuation is negative", pl.col("MNT_TOT_AM")),
            ),
            Check(
                "discharge_before_admission",
                pl.col("discharge_date") < pl.col("admission_date"),
                pl.format(
                    "EXE_SOI_DTF='{}': discharge before admission EXE_SOI_DTD='{}'",
                    pl.col("EXE_SOI_DTF"),
                    pl.col("EXE_SOI_DTD"),
                ),
            ),
            Check(
                "negative_length_of_stay",
                pl.col("length_of_stay") < 0,
                pl.format("SEJ_NBJ='{}': length of stay is negative", pl.col("SEJ_NBJ")),
            ),
            Check(
                "length_of_stay_mismatch",
                pl.col("length_of_stay") != stay_days,
                pl.format(
                    "SEJ_NBJ='{}': the dates EXE_SOI_DTD='{}' to EXE_SOI_DTF='{}' give {} days",
                    pl.col("SEJ_NBJ"),
                    pl.col("EXE_SOI_DTD"),
                    pl.col("EXE_SOI_DTF"),
                    stay_days,
                ),
            ),
            stay_outside_extract(p.extract),
            Check(
                "impossible_age",
                ~pl.col("age").is_between(p.min_age, p.max_age),
                pl.format(f"AGE_ANN='{{}}': outside [{p.min_age}, {p.max_age}]", pl.col("AGE_ANN")),
            ),
            Check(
                "unknown_finess",
                ~pl.col("hospital_id").is_in(ctx.hospital_ids.implode()),
                pl.format("ETA_NUM='{}': no clean hospital with this FINESS{}", pl.col("ETA_NUM"), hospital_note),
            ),
        ],
        key=("hospital_id", "pmsi_year", "rsa_num"),
        cascade={"unknown_finess": hospital_quarantined},
        id_column="stay_id",
        cross_row=flag_enclosing_stays,
        repairs={
            "department_format": changed("BDI_DEP", "department"),
            "icd_format": changed("DGN_PAL", "icd10_code") + changed("DGN_REL", "related_icd10_code"),
            "decimal_comma": pl.col("MNT_TOT_AM").str.contains(",", literal=True).fill_null(False).cast(pl.Int64),
        },
    )


def diagnoses_rules(ctx: Context) -> TableRules:
    year = parse_int(PMSI_YEAR_COLUMN, pl.Int16())
    stay_quarantined = pl.col("stay_id").is_in(ctx.quarantined_stay_ids.implode()).fill_null(False)
    stay_note = pl.when(stay_quarantined).then(pl.lit(" (the stay row is quarantined)")).otherwise(pl.lit(""))
    return TableRules(
        columns={
            "stay_id": stay_id_expr(text("ETA_NUM"), year, parse_int("RSA_NUM", pl.Int64())),
            "hospital_id": text("ETA_NUM"),
            "pmsi_year": year,
            "rsa_num": parse_int("RSA_NUM", pl.Int64()),
            "diagnosis_rank": parse_int("DGN_ASS_NUM", pl.Int16()),
            "icd10_code": repair_icd10("ASS_DGN"),
        },
        checks=[
            *missing_value(["ETA_NUM", "RSA_NUM", "DGN_ASS_NUM", "ASS_DGN"]),
            *invalid_number({"RSA_NUM": "rsa_num", "DGN_ASS_NUM": "diagnosis_rank"}),
            invalid_icd10("ASS_DGN", "icd10_code", required=True),
            Check(
                "unknown_stay",
                ~pl.col("stay_id").is_in(ctx.stay_ids.implode()),
                pl.concat_str(
                    [key_detail([PMSI_YEAR_COLUMN, "ETA_NUM", "RSA_NUM"], "no clean stay with this key"), stay_note]
                ),
            ),
        ],
        key=("hospital_id", "pmsi_year", "rsa_num", "diagnosis_rank"),
        cascade={"unknown_stay": stay_quarantined},
        repairs={"icd_format": changed("ASS_DGN", "icd10_code")},
    )


def patients_rules(ctx: Context) -> TableRules:
    p = ctx.params
    low = pl.col("birth_year") < p.min_birth_year
    if ctx.max_admission_year is None:
        too_old, bound = low, f"before {p.min_birth_year}"
    else:
        too_old = low | (pl.col("birth_year") > ctx.max_admission_year)
        bound = f"outside [{p.min_birth_year}, {ctx.max_admission_year}] (latest admission year)"
    return TableRules(
        columns={
            "patient_id": text("BEN_NIR_PSA"),
            "birth_rank": parse_int("BEN_RNG_GEM", pl.Int16()),
            "sex": parse_sex("BEN_SEX_COD"),
            "birth_year": parse_int("BEN_NAI_ANN", pl.Int16()),
            "department": normalize_department(pl.col("BEN_RES_DPT")),
            "commune": text("BEN_RES_COM"),
            "death_date": parse_date("BEN_DCD_DTE"),
        },
        checks=[
            *missing_value(["BEN_NIR_PSA", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_RES_DPT"]),
            *invalid_number({"BEN_RNG_GEM": "birth_rank", "BEN_NAI_ANN": "birth_year"}),
            *invalid_date({"BEN_DCD_DTE": "death_date"}),
            invalid_sex("BEN_SEX_COD", "sex"),
            invalid_department("BEN_RES_DPT", "department"),
            outside_extract("BEN_DCD_DTE", "death_date", p.extract, before_start=False),
            Check(
                "impossible_birth_year",
                too_old,
                pl.format(f"BEN_NAI_ANN='{{}}': {bound}", pl.col("BEN_NAI_ANN")),
            ),
        ],
        key=("patient_id",),
        repairs={"department_format": changed("BEN_RES_DPT", "department")},
    )


def dispensing_id_expr() -> pl.Expr:
    """The nine DCIR keys of the claim line, '|'-separated (trimmed)."""
    return pl.concat_str([pl.col(k).str.strip_chars() for k in DCIR_KEYS], separator="|")


def dispensings_rules(ctx: Context) -> TableRules:
    return TableRules(
        columns={
            "dispensing_id": dispensing_id_expr(),
            "patient_id": text("BEN_NIR_PSA"),
            "dispensing_date": parse_date("EXE_SOI_DTD"),
            "cip13": text("PHA_PRS_C13"),
            "atc_code": text("PHA_ATC_C07"),
            "boxes": parse_int("PHA_ACT_QSN", pl.Int32()),
            "amount": parse_decimal("BSE_REM_MNT"),
        },
        checks=[
            unlinked_check(),
            *missing_value(["DCT_ORD_NUM", "BEN_NIR_PSA", "EXE_SOI_DTD", "PHA_PRS_C13", "PHA_ACT_QSN", "BSE_REM_MNT"]),
            *invalid_number({"PHA_ACT_QSN": "boxes", "BSE_REM_MNT": "amount"}),
            *invalid_date({"EXE_SOI_DTD": "dispensing_date"}),
            negative_value("BSE_REM_MNT", "amount"),
            outside_extract("EXE_SOI_DTD", "dispensing_date", ctx.params.extract, before_start=True),
        ],
        key=("dispensing_id",),
        repairs={"decimal_comma": pl.col("BSE_REM_MNT").str.contains(",", literal=True).fill_null(False)
                 .cast(pl.Int64)},
    )


RULES: dict[str, Callable[[Context], TableRules]] = {
    "hospitals": hospitals_rules,
    "stays": stays_rules,
    "diagnoses": diagnoses_rules,
    "patients": patients_rules,
    "dispensings": dispensings_rules,
}


# --------------------------------------------------------------------------- one table


@dataclass(frozen=True)
class CleanResult:
    """A cleaned table, its quarantine and its metrics."""

    clean: pl.DataFrame
    quarantine: pl.DataFrame
    metrics: dict[str, Any]
    quarantined_ids: pl.Series  # ids (TableRules.id_column) of quarantined rows, for child tables


def malformed_check() -> Check:
    return Check("malformed_line", pl.col(MALFORMED),
                 pl.lit("wrong number of fields or broken quoting (raw text in raw_line)"))


def quarantine_frame(rows: pl.DataFrame, table: RawTable) -> pl.DataFrame:
    """Raw columns as text (null for malformed lines, whose text is in raw_line) + extras."""
    malformed = pl.col(_REASON) == "malformed_line"
    keep = {PMSI_YEAR_COLUMN}  # known from the file name even when the line cannot be split
    present = set(rows.columns)  # a referential's key columns are not kept after its join
    raw_cols = [
        pl.when(~malformed | pl.lit(c in keep)).then(pl.col(c) if c in present else pl.lit(None, pl.String)).alias(c)
        for c in table.columns
    ]
    extras = {"source_file": pl.col(FILE), "line_number": pl.col(_LINE),
              "raw_line": pl.when(malformed).then(pl.col(_RAW)), "reason": pl.col(_REASON),
              "detail": pl.col(_DETAIL)}
    out = rows.select(*raw_cols, *(e.cast(QUARANTINE_EXTRA_COLUMNS[c]).alias(c) for c, e in extras.items()))
    return out.sort("source_file", "line_number")


def clean_frame(rows: pl.DataFrame, table_name: str, key: Sequence[str]) -> pl.DataFrame:
    """Rows without a reason, in the clean schema, sorted by key."""
    schema = CLEAN_SCHEMAS[table_name]
    return (
        rows.lazy()
        .filter(pl.col(_REASON).is_null())
        .select(pl.col(c).cast(t) for c, t in schema.items())
        .sort(list(key))
        .collect()
    )


def count_repairs(rows: pl.DataFrame, rules: TableRules) -> dict[str, int]:
    """Repaired cells per kind, in rows that end up clean."""
    ok = pl.col(_REASON).is_null()
    sums = rows.select(expr.filter(ok).sum().alias(kind) for kind, expr in rules.repairs.items())
    return {kind: int(sums[kind].item() or 0) for kind in sorted(rules.repairs)}


def count_reasons(quarantine: pl.DataFrame, rules: TableRules, table: RawTable) -> dict[str, int]:
    """Quarantined rows per reason, every reason the table can give included."""
    counts = quarantine.get_column(_REASON).value_counts()
    found = dict(zip(counts[_REASON].to_list(), counts["count"].to_list(), strict=True))
    reasons = {"malformed_line", "duplicate_key", *(c.reason for c in rules.checks)}
    if rules.cross_row is not None:
        reasons.add("encloses_stay")
    if table.links or table.lookups:
        reasons.add("orphan_row")
    reasons |= set(found)
    return {r: int(found.get(r, 0)) for r in sorted(reasons)}


def count_cascade(quarantined: pl.DataFrame, rules: TableRules) -> dict[str, int]:
    """Quarantined rows per reason whose cause is a quarantined parent row in another table."""
    if not rules.cascade:
        return {}
    sums = quarantined.select(
        ((pl.col(_REASON) == reason) & caused).sum().alias(reason) for reason, caused in rules.cascade.items()
    )
    return {reason: int(sums[reason].item()) for reason in sorted(rules.cascade)}


def file_accounting(ingested: Ingested, rows: pl.DataFrame, quarantine: pl.DataFrame) -> dict[str, Any]:
    """Per source file: raw = clean + quarantined + duplicates_dropped.

    A linked row (T_MCOaaC, VALO, ER_PRS_F ...) joined to a driving row shares its fate; one
    rejected before the join is quarantined in its own right. A referential row (IR_PHA_R,
    FINESS/SAE) not rejected counts as clean. Counted with one group-by per source, not per file.
    """
    q_by_file = dict(quarantine.group_by("source_file").len().iter_rows())
    ok = pl.col(_REASON).is_null()
    clean_by_file = dict(rows.filter(ok).group_by(FILE).len().iter_rows())
    linked_by_file: dict[str, tuple[int, int]] = {}
    for source in sorted({a.source for a in ingested.files if a.role == "link"}):
        line = pl.col(f"_line__{source}")
        counts = rows.group_by(link_file_col(source)).agg(line.n_unique().alias("linked"),
                                                          line.filter(ok).n_unique().alias("clean"))
        for name, linked, clean in counts.iter_rows():
            if name is not None:
                linked_by_file[name] = (linked, clean)
    out: dict[str, Any] = {}
    for account in ingested.files:
        name = account.file
        if account.role == "driving":
            clean = int(clean_by_file.get(name, 0))
            quarantined = int(q_by_file.get(name, 0))
        else:
            rejected = int(q_by_file.get(name, 0))
            if account.role == "link":
                linked, clean = linked_by_file.get(name, (0, 0))
                quarantined = rejected + linked - clean
            else:
                quarantined = rejected
                clean = account.raw_rows - account.duplicates_dropped - rejected
        out[name] = {"source": account.source, "role": account.role, "year": account.year,
                     "raw_rows": account.raw_rows, "clean_rows": clean, "quarantined_rows": quarantined,
                     "duplicates_dropped": account.duplicates_dropped, "format": account.format}
    return dict(sorted(out.items()))


def rows_with_reasons(ingested: Ingested, rules: TableRules, checks: Sequence[Check]) -> pl.DataFrame:
    """The driving rows with their clean columns and first failing check; duplicate keys flagged."""
    # Lazy steps collected one by one: a single fused query peaks at about twice the memory.
    rows = ingested.rows.lazy().with_columns(**rules.columns).collect()
    rows = assign_reasons(rows.lazy(), checks).collect()
    return flag_duplicate_keys(rows.lazy(), rules.key).collect()


def finish_table(ingested: Ingested, rows: pl.DataFrame, rules: TableRules, checks: Sequence[Check]) -> CleanResult:
    """Split rows with their final reasons into clean and quarantine; count (per table and per file)."""
    table = ingested.table
    quarantined = rows.filter(pl.col(_REASON).is_not_null())
    ids = quarantined.get_column(rules.id_column).drop_nulls() if rules.id_column else pl.Series([], dtype=pl.String)
    cascade = count_cascade(quarantined, rules)
    driving_q = quarantine_frame(describe(quarantined, checks, table.key), table)
    rejected = quarantine_frame(ingested.rejected, table)
    quarantine = pl.concat([driving_q, rejected], how="vertical").sort("source_file", "line_number")
    clean = clean_frame(rows, table.name, rules.key)
    driving = [f for f in ingested.files if f.role == "driving"]
    metrics = {
        "raw_rows": sum(f.raw_rows for f in driving),
        "clean_rows": clean.height,
        "quarantined_rows": driving_q.height,
        "duplicates_dropped": sum(f.duplicates_dropped for f in driving),
        "linked_rows_rejected": rejected.height,
        "quarantine_reasons": count_reasons(driving_q, rules, table),
        "repairs": count_repairs(rows, rules),
        "cascade": cascade,
        "cascade_rows": sum(cascade.values()),
        "files": file_accounting(ingested, rows, quarantine),
        "notes": ingested.notes,
    }
    return CleanResult(clean=clean, quarantine=quarantine, metrics=metrics, quarantined_ids=ids)


def table_rules(name: str, ctx: Context) -> tuple[TableRules, list[Check]]:
    rules = RULES[name](ctx)
    return rules, [malformed_check(), *rules.checks]


def clean_table(ingested: Ingested, ctx: Context) -> CleanResult:
    """Clean one logical table: derive clean columns, quarantine, account (per table and per file)."""
    rules, checks = table_rules(ingested.table.name, ctx)
    rows = rows_with_reasons(ingested, rules, checks)
    if rules.cross_row is not None:
        rows = rules.cross_row(rows.lazy()).collect()
    return finish_table(ingested, rows, rules, checks)


def check_mass_loss(name: str, result: TableOutcome, ceiling: float) -> None:
    """Stop (exit 2) when more than ``ceiling`` of a table's rows were quarantined."""
    m = result.metrics
    judged = m["raw_rows"] - m["duplicates_dropped"]
    if judged == 0 or m["quarantined_rows"] / judged <= ceiling:
        return
    q = result.quarantine.filter(pl.col("line_number").is_not_null())
    top = q.group_by("reason").agg(pl.len(), pl.first("source_file"), pl.first("line_number")).sort(
        ["len", "reason"], descending=[True, False]).head(3)
    parts = [f"{r} {n / judged:.1%} (e.g. {f} line {line})" for r, n, f, line in top.iter_rows()]
    raise MassLossError(
        f"{name}: {m['quarantined_rows'] / judged:.1%} of {judged} rows quarantined, above the ceiling"
        f" clean.max_quarantine_share={ceiling:.0%}: {'; '.join(parts)} (see data/quarantine/{name}.parquet)"
    )


def next_context(ctx: Context, name: str, clean_file: Path, quarantined_ids: pl.Series) -> Context:
    """Carry what later tables need from a freshly cleaned one (read back from its staged file)."""
    if name == "hospitals":
        ids = pl.read_parquet(clean_file, columns=["hospital_id"]).get_column("hospital_id")
        return replace(ctx, hospital_ids=ids, quarantined_hospital_ids=quarantined_ids)
    if name == "stays":
        clean = pl.read_parquet(clean_file, columns=["stay_id", "admission_date"])
        year = clean["admission_date"].dt.year().max()
        max_year = int(year) if isinstance(year, int) else None
        return replace(ctx, stay_ids=clean["stay_id"], max_admission_year=max_year,
                       quarantined_stay_ids=quarantined_ids)
    return ctx


def totals(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Sums over tables of the counts, the reasons and the repairs."""
    out: dict[str, Any] = {
        k: sum(int(t[k]) for t in tables.values())
        for k in ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped", "linked_rows_rejected",
                  "cascade_rows")
    }
    for group in ("quarantine_reasons", "repairs", "cascade"):
        summed: dict[str, int] = {}
        for t in tables.values():
            for k, v in t[group].items():
                summed[k] = summed.get(k, 0) + int(v)
        out[group] = dict(sorted(summed.items()))
    return out


# --------------------------------------------------------------------------- partitions

# The key column each table's files are partitioned by (see pipelines.snds.spill): every join
# key, duplicate key and exact duplicate line of the table stays inside one partition.
# (A hospital alone would make partitions as uneven as the hospitals' sizes.)
PARTITION_COLUMNS: dict[str, tuple[str, ...]] = {
    "stays": ("ETA_NUM", "RSA_NUM"), "diagnoses": ("ETA_NUM", "RSA_NUM"), "patients": ("BEN_NIR_PSA",),
    "dispensings": ("DCT_ORD_NUM",),
}
_ROWS_PER_MB = 8_000  # clean rows sorted in memory at once per MiB of clean.partition_mb


@dataclass(frozen=True)
class TableOutcome:
    """What is kept of a cleaned table once its clean file is written."""

    metrics: dict[str, Any]
    quarantine: pl.DataFrame
    quarantined_ids: pl.Series


def partition_count(extract: Extract, name: str, partition_mb: int) -> int:
    """Partitions of about ``partition_mb`` MiB of raw files (driving and linked) for the table; 1 = whole."""
    if name not in PARTITION_COLUMNS:
        return 1
    table = RAW_TABLES[name]
    size = sum(f.path.stat().st_size for src in (table.driving, *table.links) for f in extract.files[src])
    return max(1, math.ceil(size / (partition_mb * 2**20)))


def spill_table(extract: Extract, name: str, parts: int, work: Path,
                progress: bool) -> dict[Path, SpilledFile] | None:
    """Every driving and linked file of the table cut into partitions; None when one has quotes."""
    table = RAW_TABLES[name]
    spilled: dict[Path, SpilledFile] = {}
    for src in (table.driving, *table.links):
        for file in extract.files[src]:
            if progress:
                print(f"clean: {name:<11} spilling {file.path.name} ({file.path.stat().st_size / 2**20:,.0f} MiB)"
                      f" into {parts} partitions", file=sys.stderr, flush=True)
            try:
                found = spill_file(file, extract.encoding, parts, PARTITION_COLUMNS[name], work / file.path.name)
            except RawFileError:
                raise
            except ExtractError as exc:
                raise RawFileError(str(exc)) from exc
            if found is None:
                return None
            spilled[file.path] = found
    driving = [spilled[f.path] for f in extract.files[table.driving]]
    if driving and not SOURCES[table.driving].optional and all(s.last_line <= 1 for s in driving):
        raise RawFileError(f"{driving[0].file.path}: header but no data row ({table.driving} is required)")
    return spilled


def _part_reader(spilled: Mapping[Path, SpilledFile], part: int) -> Callable[[SourceFile, str], SourceRows]:
    def read(file: SourceFile, encoding: str) -> SourceRows:
        found = spilled.get(file.path)
        return read_part(found, part) if found is not None else read_source(file, encoding)
    return read


def _cross_row_flags(narrow: Sequence[pl.DataFrame], rules: TableRules) -> pl.DataFrame:
    """(file, line) of the rows the table's cross-row rule quarantines, over every partition at once."""
    assert rules.cross_row is not None
    flagged = rules.cross_row(pl.concat(narrow, how="vertical").lazy()).collect()
    return flagged.filter(pl.col(_REASON).is_not_null()).select(FILE, _LINE, pl.col(_REASON).alias("_cross"))


def clean_in_parts(extract: Extract, name: str, ctx: Context, parts: int, work: Path, clean_file: Path,
                   max_rows: int, progress: bool = False) -> TableOutcome | None:
    """Clean a table partition by partition (bounded memory); None when it must be read whole (quotes).

    Per partition: ingest and every per-row rule, duplicate keys included (a key lies in one
    partition). A cross-row rule across partitions (``encloses_stay``: one patient's stays in
    several hospitals) runs once on a narrow frame of every partition's rows still clean. The
    clean parts are merged by an external sort; quarantine and metrics are summed.
    """
    spilled = spill_table(extract, name, parts, work, progress)
    if spilled is None:
        return None
    rules, checks = table_rules(name, ctx)
    cross_cols = ["patient_id", "admission_date", "discharge_date", "stay_id", FILE, _LINE]
    results: list[TableOutcome] = []
    clean_parts: list[Path] = []

    def finish(part: int, ingested: Ingested, rows: pl.DataFrame, started: float) -> None:
        result = finish_table(ingested, rows, rules, checks)
        clean_parts.append(work / f"clean-{part}.parquet")
        write_parquet(result.clean, clean_parts[-1])
        results.append(TableOutcome(result.metrics, result.quarantine, result.quarantined_ids))
        if progress:
            report_progress(f"{name} {part + 1}/{parts}", result.metrics, started)

    # Rows waiting for the cross-row rule are kept on disk: (ingested without rows, file).
    waiting: list[tuple[Ingested, Path]] = []
    narrow: list[pl.DataFrame] = []
    for part in range(parts):
        started = time.perf_counter()
        ingested = ingest(extract.partition(_part_reader(spilled, part), count_lookups=part == 0), name)
        rows = rows_with_reasons(ingested, rules, checks)
        ingested = replace(ingested, rows=ingested.rows.clear())
        if rules.cross_row is None:
            finish(part, ingested, rows, started)
        else:
            waiting.append((ingested, work / f"rows-{part}.parquet"))
            rows.write_parquet(waiting[-1][1], compression="lz4")
            narrow.append(rows.filter(pl.col(_REASON).is_null()).select(*cross_cols, _REASON))
        del rows
    if waiting:
        flags = _cross_row_flags(narrow, rules)
        del narrow
        for part, (ingested, state) in enumerate(waiting):
            started = time.perf_counter()
            rows = pl.read_parquet(state).join(flags, on=[FILE, _LINE], how="left", maintain_order="left")
            rows = rows.with_columns(pl.coalesce(_REASON, "_cross").alias(_REASON)).drop("_cross")
            state.unlink()
            finish(part, ingested, rows, started)
            del rows
    write_sorted(clean_parts, rules.key, clean_file, max_rows, work)
    metrics = merge_metrics([r.metrics for r in results])
    quarantine = pl.concat([r.quarantine for r in results], how="vertical").sort("source_file", "line_number")
    ids = pl.concat([r.quarantined_ids for r in results])
    return TableOutcome(metrics, quarantine, ids)


# --------------------------------------------------------------------------- I/O


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Deterministic Parquet: same frame, same bytes."""
    df.write_parquet(path, compression="zstd", compression_level=3, statistics=True, row_group_size=256_000)


def output_files(paths: Paths) -> list[Path]:
    """Every file this stage writes."""
    files = [paths.metrics / "cleaning.json"]
    for name in RAW_TABLES:
        files += [paths.clean / f"{name}.parquet", paths.quarantine / f"{name}.parquet"]
    return files


def remove_outputs(paths: Paths) -> None:
    for path in output_files(paths):
        path.unlink(missing_ok=True)


class Staging:
    """Files written under temporary names, renamed into place only by ``commit``."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []

    def _temp(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        self.staged.append((tmp, target))
        return tmp

    def reserve(self, target: Path) -> Path:
        """The temporary path ``target`` is written to (renamed into place by ``commit``)."""
        return self._temp(target)

    def parquet(self, df: pl.DataFrame, target: Path) -> None:
        write_parquet(df, self._temp(target))

    def json(self, obj: Mapping[str, Any], target: Path) -> None:
        text = metrics_io.json_text(obj)
        self._temp(target).write_text(text, encoding="utf-8")

    def commit(self) -> None:
        for tmp, target in self.staged:
            tmp.replace(target)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()


def report_progress(name: str, metrics: Mapping[str, Any], started: float) -> None:
    """One line per table on stderr: rows in, out, quarantined, seconds and peak memory so far."""
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KB on Linux
    print(f"clean: {name:<11} {metrics['raw_rows']:>11,} raw  {metrics['clean_rows']:>11,} clean"
          f"  {metrics['quarantined_rows']:>9,} quarantined  {time.perf_counter() - started:6.1f} s"
          f"  peak {peak_gb:.2f} GB", file=sys.stderr, flush=True)


def clean_and_stage(paths: Paths, params: CleanParams, staging: Staging, progress: bool = False) -> dict[str, Any]:
    """Clean the tables one at a time (bounded memory), staging their outputs."""
    extract = read_extract(paths.raw, params.encoding)
    ctx = Context(params)
    tables: dict[str, Any] = {}
    work = paths.data / "tmp" / "clean"
    for name in TABLE_ORDER:
        started = time.perf_counter()
        clean_file = staging.reserve(paths.clean / f"{name}.parquet")
        parts = partition_count(extract, name, params.partition_mb)
        outcome = None
        if parts > 1:
            shutil.rmtree(work, ignore_errors=True)  # a killed run's spill
            try:
                outcome = clean_in_parts(extract, name, ctx, parts, work, clean_file,
                                         max_rows=params.partition_mb * _ROWS_PER_MB, progress=progress)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        if outcome is None:
            result = clean_table(ingest(extract, name), ctx)
            write_parquet(result.clean, clean_file)
            outcome = TableOutcome(result.metrics, result.quarantine, result.quarantined_ids)
            del result
        if progress:
            report_progress(name, outcome.metrics, started)
        staging.parquet(outcome.quarantine, paths.quarantine / f"{name}.parquet")
        check_mass_loss(name, outcome, params.max_quarantine_share)
        tables[name] = outcome.metrics
        ctx = next_context(ctx, name, clean_file, outcome.quarantined_ids)
        del outcome
    tables = dict(sorted(tables.items()))
    metrics: dict[str, Any] = {"tables": tables, "totals": totals(tables)}
    staging.json(metrics, paths.metrics / "cleaning.json")
    return metrics


def run_clean(paths: Paths, params: CleanParams, progress: bool = False) -> dict[str, Any]:
    """The stage: read data/raw, write data/clean, data/quarantine and cleaning.json.

    Outputs are staged under temporary names and renamed into place only once every
    table was cleaned. On a structural error (``RawFileError``) the previous outputs of
    this stage are removed too, so nothing stale can be taken for this run's result.
    """
    staging = Staging()
    try:
        metrics = clean_and_stage(paths, params, staging, progress)
    except MassLossError:
        staging.discard()  # previous outputs stay: this run's inputs are the problem
        raise
    except RawFileError:
        staging.discard()
        remove_outputs(paths)
        raise
    except BaseException:
        staging.discard()
        raise
    staging.commit()
    return metrics
