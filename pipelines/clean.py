"""Clean stage: raw SNDS-shaped CSV exports -> typed clean tables, quarantine and metrics.

Inputs are ``data/raw/<RawTable.file>`` (``;``-separated, UTF-8, header line, dates
``dd/mm/yyyy``, LF or CRLF line endings; RFC 4180 quoting: a field in double quotes may hold
``;``, doubled quotes and newlines). Outputs:

* ``data/clean/<table>.parquet``: exactly ``contracts.CLEAN_SCHEMAS[table]``, sorted by key.
* ``data/quarantine/<table>.parquet``: the raw columns of ``RawTable.columns`` as text
  (values as written, unstripped), then ``line_number`` (1-based, header = line 1; a quoted
  record spanning lines has its first line's number), ``reason`` and ``detail``
  (``contracts.QUARANTINE_EXTRA_COLUMNS``), sorted by line. A ``malformed_line`` row cannot be
  split reliably, so its whole raw text is kept in the first raw column, the others are null.
* ``reports/metrics/cleaning.json``: per-table counts, quarantine reasons, repairs and cascades.

Structural problems raise ``RawFileError`` (the CLI exits 2 with one line naming the file):
missing or empty file, not UTF-8, CR-only line endings, wrong delimiter, duplicate or missing
columns, a header with no data row (every table is required), a quoted field never closed.

Processing of one table (vectorised Polars expressions over text columns, decoupled from reading):

1. The file is read as records; the header is checked. Trailing blank lines are ignored.
2. Exact duplicate records (same raw text) are dropped, keeping the first.
3. Every record is split into the header's columns; clean columns are derived
   (repairs: department formats, ICD-10 formats, decimal commas, empty -> null).
4. Each row gets at most one quarantine reason: the first failing check in ``REASONS``
   order (so ``raw_rows == clean_rows + quarantined_rows + duplicates_dropped``). Cross-row
   checks (``duplicate_key``, ``encloses_stay``) only look at rows passing every other check.

Every error-level dbt test raw data can reach has its rule here (contracts.DBT_TEST_REASONS,
checked against the dbt YAML by tests/test_clean_dbt_contract.py). Date bounds come from the
extract period (``CleanParams.extract`` = warehouse.data_start_date / data_end_date).

Tables are cleaned in the order hospitals, stays, diagnoses, patients, dispensings:
stays are checked against clean hospitals (``unknown_finess``), diagnoses against clean
stays (``unknown_stay``), and a patient's birth year must not exceed the latest admission
year among clean stays (``impossible_birth_year``). A child row whose parent key is in the
other table's quarantine is a cascade: counted under ``cascade`` in the metrics and said so
in its detail, apart from truly unknown keys.

Repairs are counted per repaired cell of rows that end up clean.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.config import CleanParams, ExtractPeriod, Paths
from pipelines.contracts import (
    CLEAN_SCHEMAS,
    EXIT_MODES,
    HOSPITAL_CATEGORIES,
    PROVENANCES,
    QUARANTINE_EXTRA_COLUMNS,
    RAW_DATE_FORMAT,
    RAW_SEPARATOR,
    RAW_TABLES,
    SEX_CODES,
    RawTable,
    stay_id_expr,
)

# Quarantine reasons in precedence order: a row failing several checks gets the first.
REASONS: tuple[str, ...] = (
    "malformed_line",
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
ICD10_PATTERN = r"^[A-Z][0-9]{2}[0-9A-Z]{0,4}$"
_INT_PATTERN = r"^[+-]?[0-9]+$"
_DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"
_DATE_PATTERN = r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$"
_OTHER_SEPARATORS: tuple[tuple[str, str], ...] = ((",", "','"), ("\t", "tab"), ("|", "'|'"))
_UNUSED_BYTE = "\x1f"  # never expected in a raw file (ASCII unit separator)
_NON_BLANK = re.compile(rb"[^\s]")
_QUOTE = b'"'
_LINE = "line_number"
_FIRST_LINE = "_first_line"
_RAW = "raw_line"
_REASON = "reason"
_DETAIL = "detail"


class RawFileError(ValueError):
    """A raw file cannot be read as a whole (missing, empty, not UTF-8, bad header)."""


# --------------------------------------------------------------------------- reading


def decode_utf8(data: bytes, path: Path) -> str:
    """Decode the file, naming the first undecodable byte's offset and line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise RawFileError(f"{path}: not valid UTF-8: byte 0x{bad} at offset {exc.start} (line {line})") from exc


def _unquote(name: str) -> str:
    """A header name written as an RFC 4180 quoted field ('"ETA_NUM"') -> ETA_NUM."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def parse_header(header_line: str, table: RawTable, path: Path) -> tuple[str, ...]:
    """Column names of the header; raise on wrong delimiter, duplicates or missing columns."""
    header_line = header_line.removeprefix("\ufeff").rstrip("\r")
    if not header_line.strip():
        raise RawFileError(f"{path}: header line is empty")
    if RAW_SEPARATOR not in header_line:
        for sep, label in _OTHER_SEPARATORS:
            if sep in header_line:
                raise RawFileError(f"{path}: header looks {label}-separated, expected '{RAW_SEPARATOR}'")
    names = tuple(_unquote(name.strip()) for name in header_line.split(RAW_SEPARATOR))
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RawFileError(f"{path}: duplicate column name(s): {', '.join(duplicated)}")
    missing = [c for c in table.columns if c not in names]
    if missing:
        raise RawFileError(f"{path}: missing required column(s): {', '.join(missing)}")
    return names


@dataclass(frozen=True)
class RawLines:
    """The data lines of one raw file (header excluded) and its header's columns."""

    table: RawTable
    header: tuple[str, ...]
    lines: pl.DataFrame  # line_number Int64, raw_line String
    separator: str = RAW_SEPARATOR  # _UNUSED_BYTE when quoted records were split and re-joined


def inspect_raw_file(path: Path, table: RawTable) -> tuple[str, ...]:
    """Check what would make the whole file unusable; return the header's column names."""
    if not path.is_file():
        raise RawFileError(f"{path}: raw file not found")
    data = path.read_bytes()
    if not data:
        raise RawFileError(f"{path}: file is empty (0 bytes, no header line)")
    decode_utf8(data, path)  # validation only: the text is read again by Polars
    if b"\r" in data and b"\n" not in data:
        raise RawFileError(f"{path}: file uses CR-only line endings (old Mac style); convert to LF or CRLF")
    header_line, newline, _ = data.partition(b"\n")
    header = parse_header(header_line.decode("utf-8"), table, path)
    if not newline or _NON_BLANK.search(data, len(header_line) + 1) is None:
        raise RawFileError(f"{path}: header but no data row (table '{table.name}' is required)")
    return header


def _expected_line_count(data: bytes) -> int:
    """Lines in the file, a final newline not starting an extra line."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _lines_by_polars(path: Path, data: bytes) -> pl.Series | None:
    """Every line of the file (header included) via the native CSV reader, or None.

    The file is read as one String column with a separator byte absent from the data;
    None when that byte occurs or the reader's line count differs from the file's.
    """
    if _UNUSED_BYTE.encode() in data:
        return None
    frame = pl.read_csv(
        path,
        has_header=False,
        separator=_UNUSED_BYTE,
        quote_char=None,
        schema={_RAW: pl.String()},
        raise_if_empty=False,
    )
    lines = frame.get_column(_RAW).fill_null("")
    return lines if len(lines) == _expected_line_count(data) else None


def _lines_by_python(data: bytes) -> pl.Series:
    """Every line of the file (header included), split in Python (fallback)."""
    text = data.decode("utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    return pl.Series(_RAW, text.split("\n"), dtype=pl.String)


def _records_by_csv(data: bytes, path: Path) -> tuple[list[int], list[str]]:
    """RFC 4180 records (a quoted field may hold ';', doubled quotes and newlines).

    Returns each record's first line number and its fields joined by ``_UNUSED_BYTE``.
    """
    text = data.decode("utf-8")
    if _UNUSED_BYTE in text:
        raise RawFileError(f"{path}: quoted file holds the control byte 0x1f, cannot split it safely")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=RAW_SEPARATOR, quotechar='"', strict=True)
    starts: list[int] = []
    records: list[str] = []
    line = 1
    try:
        for fields in reader:
            starts.append(line)
            records.append(_UNUSED_BYTE.join(fields))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise RawFileError(f"{path}: line {line}: bad quoting ({exc})") from exc
    return starts, records


def read_raw_lines(path: Path, table: RawTable) -> RawLines:
    """Read a raw file as numbered records (header checked, trailing blank lines ignored).

    Files without any double quote are split on newlines by the native reader (fast path);
    files with quotes go through RFC 4180 parsing, a record keeping its first line's number.
    """
    header = inspect_raw_file(path, table)
    data = path.read_bytes()
    separator = RAW_SEPARATOR
    if _QUOTE in data:
        starts, records = _records_by_csv(data, path)
        numbers = pl.Series(_LINE, starts[1:], dtype=pl.Int64)
        body = pl.Series(_RAW, records[1:], dtype=pl.String)
        separator = _UNUSED_BYTE
    else:
        lines = _lines_by_polars(path, data)
        if lines is None:
            lines = _lines_by_python(data)
        body = lines.slice(1).str.strip_suffix("\r")
        numbers = pl.int_range(2, len(body) + 2, dtype=pl.Int64, eager=True)
    del data
    nonblank = (body != "").arg_true()
    end = int(nonblank[-1]) + 1 if len(nonblank) else 0
    frame = pl.DataFrame({_LINE: numbers.slice(0, end), _RAW: body.slice(0, end)})
    return RawLines(table=table, header=header, lines=frame, separator=separator)


def drop_duplicate_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """Keep the first of identical raw lines."""
    return lines.filter(pl.col(_RAW).is_first_distinct())


def split_fields(raw: RawLines) -> pl.LazyFrame:
    """Split each line into String columns named by the header, plus its field count.

    The raw text is kept only for malformed lines (the only ones whose quarantine row needs it).
    """
    n = len(raw.header)
    fields = pl.col(_RAW).str.split_exact(raw.separator, n - 1)
    shown = pl.col(_RAW).str.replace_all(raw.separator, RAW_SEPARATOR, literal=True)
    names = {f"field_{i}": name for i, name in enumerate(raw.header)}
    return (
        raw.lines.lazy()
        .with_columns(
            _n_fields=pl.col(_RAW).str.count_matches(raw.separator, literal=True) + 1,
            _fields=fields,
        )
        .unnest("_fields")
        .rename(names)
        .select(
            _LINE,
            pl.when(pl.col("_n_fields") != n).then(shown).alias(_RAW),  # kept for malformed lines only
            "_n_fields",
            *raw.table.columns,
        )
    )


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
    """A date written dd/mm/yyyy; null when empty or not a real date."""
    value = text(col)
    valid = pl.when(value.str.contains(_DATE_PATTERN)).then(value)
    return valid.str.to_date(RAW_DATE_FORMAT, strict=False)


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
    """Raw date column (key) non-empty but not parsable as dd/mm/yyyy."""
    return [
        Check(
            "invalid_date",
            text(raw).is_not_null() & pl.col(parsed).is_null(),
            pl.format(f"{raw}='{{}}': not a valid dd/mm/yyyy date", pl.col(raw)),
        )
        for raw, parsed in pairs.items()
    ]


def invalid_sex(raw: str, parsed: str) -> Check:
    return Check(
        "invalid_sex",
        ~pl.col(parsed).is_in(list(SEX_CODES)).fill_null(False),
        pl.format(f"{raw}='{{}}': sex must be 1 or 2", pl.col(raw)),
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


def invalid_code(raw: str, parsed: str, codes: Sequence[str], nomenclature: str) -> Check:
    """A non-empty code outside its nomenclature (empty codes are checked by missing_value)."""
    return Check(
        "invalid_code",
        pl.col(parsed).is_not_null() & ~pl.col(parsed).is_in(list(codes)),
        pl.format(f"{raw}='{{}}': not a {nomenclature} code ({', '.join(codes)})", pl.col(raw)),
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
    later_min = discharge.reverse().cum_min().reverse().shift(-1).over("patient_id")
    encloses = ok & (pl.col("discharge_date") > later_min).fill_null(False)
    return (
        frame.sort("patient_id", "admission_date", "discharge_date", "stay_id", _LINE, nulls_last=True)
        .with_columns(pl.when(encloses).then(pl.lit("encloses_stay")).otherwise(pl.col(_REASON)).alias(_REASON))
    )


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
    return TableRules(
        columns={
            "hospital_id": text("IDE_ETA_NUM"),
            "hospital_name": text("IDE_ETA_NOM"),
            "postal_code": text("IDE_BDI_COD"),
            "department": postal_department("IDE_BDI_COD"),
            "category_code": text("IDE_PSH_CAT"),
            "category": text("IDE_PSH_CAT").replace_strict(HOSPITAL_CATEGORIES, default=None, return_dtype=pl.String),
            "beds": parse_int("IDE_LIT_NBR", pl.Int32()),
        },
        checks=[
            *missing_value(["IDE_ETA_NUM", "IDE_BDI_COD", "IDE_PSH_CAT"]),
            *invalid_number({"IDE_LIT_NBR": "beds"}),
            invalid_department("IDE_BDI_COD", "department"),
            invalid_code("IDE_PSH_CAT", "category_code", tuple(HOSPITAL_CATEGORIES), "hospital category"),
            negative_value("IDE_LIT_NBR", "beds"),
            mismatch,
        ],
        key=("hospital_id",),
        repairs={},
        id_column="hospital_id",
    )


def stays_rules(ctx: Context) -> TableRules:
    p = ctx.params
    cost_raw = text("MNT_TOT_AM")
    # SEJ_NBJ duplicates the dates: a disagreement cannot tell which side is the typo, so quarantine.
    stay_days = (pl.col("discharge_date") - pl.col("admission_date")).dt.total_days()
    hospital_quarantined = pl.col("hospital_id").is_in(ctx.quarantined_hospital_ids.implode()).fill_null(False)
    hospital_note = pl.when(hospital_quarantined).then(pl.lit(" (the hospital row is quarantined)")).otherwise(
        pl.lit("")
    )
    return TableRules(
        columns={
            "stay_id": stay_id_expr(text("ETA_NUM"), parse_int("RSA_NUM", pl.Int64())),
            "hospital_id": text("ETA_NUM"),
            "rsa_num": parse_int("RSA_NUM", pl.Int64()),
            "patient_id": text("NIR_ANO_17"),
            "admission_date": parse_date("EXE_SOI_DTD"),
            "discharge_date": parse_date("EXE_SOI_DTF"),
            "length_of_stay": parse_int("SEJ_NBJ", pl.Int32()),
            "icd10_code": repair_icd10("DGN_PAL"),
            "related_icd10_code": repair_icd10("DGN_REL"),
            "entry_mode": text("ENT_MOD"),
            "entry_source": text("ENT_PRV"),
            "discharge_mode": text("SOR_MOD"),
            "discharge_destination": text("SOR_DES"),
            "ghm_code": text("GRG_GHM"),
            "age": parse_int("AGE_ANN", pl.Int16()),
            "sex": parse_int("COD_SEX", pl.Int8()),
            "department": normalize_department(pl.col("BDI_DEP")),
            "stay_cost": parse_decimal("MNT_TOT_AM"),
        },
        checks=[
            *missing_value(
                [
                    "ETA_NUM",
                    "RSA_NUM",
                    "NIR_ANO_17",
                    "EXE_SOI_DTD",
                    "EXE_SOI_DTF",
                    "SEJ_NBJ",
                    "DGN_PAL",
                    "ENT_MOD",
                    "SOR_MOD",
                    "GRG_GHM",
                    "AGE_ANN",
                    "COD_SEX",
                    "BDI_DEP",
                ]
            ),
            *invalid_number(
                {"RSA_NUM": "rsa_num", "SEJ_NBJ": "length_of_stay", "AGE_ANN": "age", "MNT_TOT_AM": "stay_cost"}
            ),
            *invalid_date({"EXE_SOI_DTD": "admission_date", "EXE_SOI_DTF": "discharge_date"}),
            invalid_sex("COD_SEX", "sex"),
            invalid_department("BDI_DEP", "department"),
            invalid_icd10("DGN_PAL", "icd10_code", required=True),
            invalid_icd10("DGN_REL", "related_icd10_code", required=False),
            invalid_code("ENT_MOD", "entry_mode", EXIT_MODES, "PMSI entry mode"),
            invalid_code("ENT_PRV", "entry_source", PROVENANCES, "PMSI provenance"),
            invalid_code("SOR_MOD", "discharge_mode", EXIT_MODES, "PMSI exit mode"),
            invalid_code("SOR_DES", "discharge_destination", PROVENANCES, "PMSI destination"),
            Check("missing_cost", cost_raw.is_null(), pl.format("{}: stay valuation is empty", quoted("MNT_TOT_AM"))),
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
        key=("hospital_id", "rsa_num"),
        cascade={"unknown_finess": hospital_quarantined},
        id_column="stay_id",
        cross_row=flag_enclosing_stays,
        repairs={
            "department_format": changed("BDI_DEP", "department"),
            "icd_format": changed("DGN_PAL", "icd10_code") + changed("DGN_REL", "related_icd10_code"),
            "decimal_comma": pl.col("MNT_TOT_AM").str.contains(",", literal=True).cast(pl.Int64),
        },
    )


def diagnoses_rules(ctx: Context) -> TableRules:
    stay_quarantined = pl.col("stay_id").is_in(ctx.quarantined_stay_ids.implode()).fill_null(False)
    stay_note = pl.when(stay_quarantined).then(pl.lit(" (the stay row is quarantined)")).otherwise(pl.lit(""))
    return TableRules(
        columns={
            "stay_id": stay_id_expr(text("ETA_NUM"), parse_int("RSA_NUM", pl.Int64())),
            "hospital_id": text("ETA_NUM"),
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
                pl.concat_str([key_detail(["ETA_NUM", "RSA_NUM"], "no clean stay with this key"), stay_note]),
            ),
        ],
        key=("hospital_id", "rsa_num", "diagnosis_rank"),
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
            "sex": parse_int("BEN_SEX_COD", pl.Int8()),
            "birth_year": parse_int("BEN_NAI_ANN", pl.Int16()),
            "department": normalize_department(pl.col("BEN_RES_DPT")),
            "commune": text("BEN_RES_COM"),
            "death_date": parse_date("BEN_DCD_DTE"),
        },
        checks=[
            *missing_value(["BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_RES_DPT"]),
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


def dispensings_rules(ctx: Context) -> TableRules:
    return TableRules(
        columns={
            "dispensing_id": text("DCT_ORD_NUM"),
            "patient_id": text("BEN_NIR_PSA"),
            "dispensing_date": parse_date("EXE_SOI_DTD"),
            "cip13": text("PHA_PRS_C13"),
            "atc_code": text("PHA_ATC_C07"),
            "boxes": parse_int("PHA_ACT_QSN", pl.Int32()),
            "amount": parse_decimal("BSE_REM_MNT"),
        },
        checks=[
            *missing_value(["DCT_ORD_NUM", "BEN_NIR_PSA", "EXE_SOI_DTD", "PHA_PRS_C13", "PHA_ACT_QSN", "BSE_REM_MNT"]),
            *invalid_number({"PHA_ACT_QSN": "boxes", "BSE_REM_MNT": "amount"}),
            *invalid_date({"EXE_SOI_DTD": "dispensing_date"}),
            negative_value("BSE_REM_MNT", "amount"),
            outside_extract("EXE_SOI_DTD", "dispensing_date", ctx.params.extract, before_start=True),
        ],
        key=("dispensing_id",),
        repairs={"decimal_comma": pl.col("BSE_REM_MNT").str.contains(",", literal=True).cast(pl.Int64)},
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


def malformed_check(n_columns: int) -> Check:
    return Check(
        "malformed_line",
        pl.col("_n_fields") != n_columns,
        pl.format(f"expected {n_columns} fields, got {{}}", pl.col("_n_fields")),
    )


def quarantine_frame(rows: pl.DataFrame, table: RawTable) -> pl.DataFrame:
    """Raw columns as text (whole raw line in the first one for malformed lines) + extras."""
    malformed = pl.col(_REASON) == "malformed_line"
    first, *rest = table.columns
    raw_cols = [pl.when(malformed).then(pl.col(_RAW)).otherwise(pl.col(first)).alias(first)]
    raw_cols += [pl.when(~malformed).then(pl.col(c)).alias(c) for c in rest]
    extras = [pl.col(c).cast(t) for c, t in QUARANTINE_EXTRA_COLUMNS.items()]
    return rows.select(*raw_cols, *extras).sort(_LINE)


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
    return {kind: int(sums[kind].item()) for kind in sorted(rules.repairs)}


def count_reasons(quarantine: pl.DataFrame, rules: TableRules) -> dict[str, int]:
    """Quarantined rows per reason, every reason the table can give included."""
    counts = quarantine.get_column(_REASON).value_counts()
    found = dict(zip(counts[_REASON].to_list(), counts["count"].to_list(), strict=True))
    reasons = {"malformed_line", "duplicate_key", *(c.reason for c in rules.checks)}
    if rules.cross_row is not None:
        reasons.add("encloses_stay")
    return {r: int(found.get(r, 0)) for r in sorted(reasons)}


def count_cascade(quarantined: pl.DataFrame, rules: TableRules) -> dict[str, int]:
    """Quarantined rows per reason whose cause is a quarantined parent row in another table."""
    if not rules.cascade:
        return {}
    sums = quarantined.select(
        ((pl.col(_REASON) == reason) & caused).sum().alias(reason) for reason, caused in rules.cascade.items()
    )
    return {reason: int(sums[reason].item()) for reason in sorted(rules.cascade)}


def clean_table(raw: RawLines, ctx: Context) -> CleanResult:
    """Clean one table's lines: split, derive clean columns, quarantine, account."""
    name = raw.table.name
    rules = RULES[name](ctx)
    unique = drop_duplicate_lines(raw.lines)
    checks = [malformed_check(len(raw.header)), *rules.checks]
    # Lazy steps (common subexpressions computed once), collected one by one: a single
    # fused query peaks at about twice the memory.
    rows = split_fields(replace(raw, lines=unique)).collect()
    rows = rows.lazy().with_columns(**rules.columns).collect()
    rows = assign_reasons(rows.lazy(), checks).collect()
    rows = flag_duplicate_keys(rows.lazy(), rules.key).collect()
    if rules.cross_row is not None:
        rows = rules.cross_row(rows.lazy()).collect()
    quarantined = rows.filter(pl.col(_REASON).is_not_null())
    ids = quarantined.get_column(rules.id_column).drop_nulls() if rules.id_column else pl.Series([], dtype=pl.String)
    cascade = count_cascade(quarantined, rules)
    quarantine = quarantine_frame(describe(quarantined, checks, raw.table.key), raw.table)
    clean = clean_frame(rows, name, rules.key)
    metrics = {
        "raw_rows": raw.lines.height,
        "clean_rows": clean.height,
        "quarantined_rows": quarantine.height,
        "duplicates_dropped": raw.lines.height - unique.height,
        "quarantine_reasons": count_reasons(quarantine, rules),
        "repairs": count_repairs(rows, rules),
        "cascade": cascade,
        "cascade_rows": sum(cascade.values()),
    }
    return CleanResult(clean=clean, quarantine=quarantine, metrics=metrics, quarantined_ids=ids)


def next_context(ctx: Context, name: str, result: CleanResult) -> Context:
    """Carry what later tables need from a freshly cleaned one."""
    clean = result.clean
    if name == "hospitals":
        return replace(ctx, hospital_ids=clean["hospital_id"], quarantined_hospital_ids=result.quarantined_ids)
    if name == "stays":
        year = clean["admission_date"].dt.year().max()
        max_year = int(year) if isinstance(year, int) else None
        return replace(
            ctx, stay_ids=clean["stay_id"], max_admission_year=max_year, quarantined_stay_ids=result.quarantined_ids
        )
    return ctx


def totals(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Sums over tables of the counts, the reasons and the repairs."""
    out: dict[str, Any] = {
        k: sum(int(t[k]) for t in tables.values())
        for k in ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped", "cascade_rows")
    }
    for group in ("quarantine_reasons", "repairs", "cascade"):
        summed: dict[str, int] = {}
        for t in tables.values():
            for k, v in t[group].items():
                summed[k] = summed.get(k, 0) + int(v)
        out[group] = dict(sorted(summed.items()))
    return out


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

    def parquet(self, df: pl.DataFrame, target: Path) -> None:
        write_parquet(df, self._temp(target))

    def json(self, obj: Mapping[str, Any], target: Path) -> None:
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
        self._temp(target).write_text(text, encoding="utf-8")

    def commit(self) -> None:
        for tmp, target in self.staged:
            tmp.replace(target)
        self.staged.clear()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()


def clean_and_stage(paths: Paths, params: CleanParams, staging: Staging) -> dict[str, Any]:
    """Clean the tables one at a time (bounded memory), staging their outputs."""
    for spec in RAW_TABLES.values():  # every structural check before any cleaning
        inspect_raw_file(paths.raw / spec.file, spec)
    ctx = Context(params)
    tables: dict[str, Any] = {}
    for name in TABLE_ORDER:
        spec = RAW_TABLES[name]
        result = clean_table(read_raw_lines(paths.raw / spec.file, spec), ctx)
        staging.parquet(result.clean, paths.clean / f"{name}.parquet")
        staging.parquet(result.quarantine, paths.quarantine / f"{name}.parquet")
        tables[name] = result.metrics
        ctx = next_context(ctx, name, result)
        del result
    tables = dict(sorted(tables.items()))
    metrics: dict[str, Any] = {"tables": tables, "totals": totals(tables)}
    staging.json(metrics, paths.metrics / "cleaning.json")
    return metrics


def run_clean(paths: Paths, params: CleanParams) -> dict[str, Any]:
    """The stage: read data/raw, write data/clean, data/quarantine and cleaning.json.

    Outputs are staged under temporary names and renamed into place only once every
    table was cleaned. On a structural error (``RawFileError``) the previous outputs of
    this stage are removed too, so nothing stale can be taken for this run's result.
    """
    staging = Staging()
    try:
        metrics = clean_and_stage(paths, params, staging)
    except RawFileError:
        staging.discard()
        remove_outputs(paths)
        raise
    except BaseException:
        staging.discard()
        raise
    staging.commit()
    return metrics
