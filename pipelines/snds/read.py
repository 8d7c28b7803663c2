"""Read one extract file as text: encoding, delimiter, quoting and date formats detected and reported.

Every value stays text (quarantine keeps what was written); each row keeps its provenance
(file name, 1-based line number, header = line 1) and, when its field count is wrong, its
raw text. Lines are cut by Polars' native reader (one String column); fields are split by
vectorised string expressions, so the same steps can later run lazily on a scanned file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.contracts import SourceTable
from pipelines.snds.discover import SourceFile
from pipelines.snds.errors import ExtractError

ENCODINGS: tuple[str, ...] = ("utf-8", "cp1252", "latin-1")  # tried in this order by "auto"
SEPARATORS: tuple[str, ...] = (";", ",", "\t", "|")
# Date formats an SNDS export may use (label -> strptime format); SAS writes datetimes.
DATE_FORMATS: dict[str, str] = {
    "dd/mm/yyyy": "%d/%m/%Y",
    "ddmmyyyy": "%d%m%Y",
    "iso": "%Y-%m-%d",
    "iso_datetime": "%Y-%m-%d %H:%M:%S",
    "iso_datetime_t": "%Y-%m-%dT%H:%M:%S",
    "sas_datetime": "%d%b%Y:%H:%M:%S",
}
# The shape a value must have in each format (strptime alone takes '23' for a 4-digit year).
_DATE_SHAPES: dict[str, str] = {
    "%d/%m/%Y": r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$",
    "%d%m%Y": r"^[0-9]{8}$",
    "%Y-%m-%d": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "%Y-%m-%d %H:%M:%S": r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
    "%Y-%m-%dT%H:%M:%S": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$",
    "%d%b%Y:%H:%M:%S": r"^[0-9]{2}[A-Za-z]{3}[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}$",
}
# A date column is structurally wrong when its best format parses less than this share.
MIN_DATE_SHARE = 0.5
LINE = "_line"  # 1-based line number in the file
RAW = "_raw"  # the raw line (kept for malformed rows only)
FILE = "_file"  # file name
MALFORMED = "_malformed"  # wrong field count or broken quoting
N_FIELDS = "_n_fields"
DATE_SUFFIX = "__date"  # parsed date beside each raw date column
_UNUSED = "\x1f"  # a byte absent from text files: read each line as one field


def date_column(col: str) -> str:
    """Name of the parsed Date column of a raw date column."""
    return f"{col}{DATE_SUFFIX}"


@dataclass(frozen=True)
class FileFormat:
    """What was detected (or imposed by params) for one file."""

    encoding: str
    separator: str
    quoted: bool
    date_formats: dict[str, str] = field(default_factory=dict)  # column -> DATE_FORMATS label
    line_endings: str = "LF"  # LF, CRLF or CR (CR-only files are read as if LF: reported, not refused)

    def describe(self) -> dict[str, object]:
        sep = {"\t": "tab"}.get(self.separator, self.separator)
        return {"encoding": self.encoding, "separator": sep, "quoted": self.quoted,
                "line_endings": self.line_endings, "date_formats": dict(sorted(self.date_formats.items()))}


@dataclass(frozen=True)
class SourceRows:
    """The data rows of one file: text columns named as the SourceTable's, plus provenance."""

    file: SourceFile
    format: FileFormat
    rows: pl.DataFrame  # FILE, LINE, RAW, MALFORMED, source columns (String), parsed dates
    raw_rows: int  # data lines (blank trailing lines excluded)
    duplicates_dropped: int  # exact duplicate lines dropped (first kept)
    header: tuple[str, ...]


def decode(data: bytes, path: Path, encoding: str) -> tuple[str, str]:
    """The file's text and the encoding used ("auto": UTF-8, else CP1252, else Latin-1)."""
    candidates = ENCODINGS if encoding == "auto" else (encoding,)
    for candidate in candidates:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError as exc:
            if encoding != "auto":
                line = data.count(b"\n", 0, exc.start) + 1
                bad = data[exc.start : exc.start + 1].hex()
                raise ExtractError(
                    f"{path}: not valid {encoding}: byte 0x{bad} at offset {exc.start} (line {line});"
                    " set clean.encoding to auto, cp1252 or latin-1 for SAS exports"
                ) from exc
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def line_endings(text: str) -> str:
    """LF, CRLF or CR: how the file ends its lines (a bare CR in an LF file is data)."""
    if "\r\n" in text:
        return "CRLF"
    return "CR" if "\r" in text and "\n" not in text else "LF"


def _lines(text: str) -> pl.Series:
    """Every line (header included); CRLF and CR-only endings accepted, a final newline ignored.

    A bare CR inside a file that has LF line ends is data, not a line break.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n") if "\n" in text else text.replace("\r", "\n")
    data = text.encode("utf-8")
    expected = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if _UNUSED.encode() not in data:
        frame = pl.read_csv(io.BytesIO(data), has_header=False, separator=_UNUSED, quote_char=None,
                            schema={RAW: pl.String()}, raise_if_empty=False)
        lines = frame.get_column(RAW).fill_null("")
        if len(lines) == expected:
            return lines
    body = text[:-1] if text.endswith("\n") else text
    return pl.Series(RAW, body.split("\n"), dtype=pl.String)


def _unquoted(header: str) -> str:
    """The header with quoted parts removed (separators inside quotes do not count)."""
    parts = header.split('"')
    return "".join(parts[0::2])


def detect_separator(header: str, path: Path) -> str:
    counts = {sep: _unquoted(header).count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: counts[s])
    if counts[best] == 0:
        raise ExtractError(f"{path}: header has no ';', ',', tab or '|' separator (one column only?)")
    return best


def _sep_pattern(sep: str) -> str:
    return "\\t" if sep == "\t" else "\\" + sep if sep == "|" else sep


def _split_quoted(line: pl.Expr, sep: str) -> pl.Expr:
    """RFC 4180 fields of a record (list of raw field texts, each with its leading separator).

    A field is quoted (doubled quotes and newlines allowed inside), or plain text not starting
    with a quote (a quote inside plain text is text, as in CH 5" nord), or empty.
    """
    s = _sep_pattern(sep)
    pattern = f'{s}(?:"(?:[^"]|"")*"|[^{s}"][^{s}]*|)'
    return pl.concat_str([pl.lit(sep), line]).str.extract_all(pattern)


def _fully_split(line: pl.Expr, sep: str) -> pl.Expr:
    """True when the fields found cover the whole line (no unclosed or stray quoted field)."""
    parts = _split_quoted(line, sep)
    return parts.list.eval(pl.element().str.len_chars()).list.sum() == line.str.len_chars() + 1


def merge_quoted_records(lines: pl.DataFrame, sep: str, path: Path) -> pl.DataFrame:
    """Join the lines of records whose quoted field holds a newline (vectorised).

    A line with an odd number of quotes that does not split completely opens a quoted field;
    the lines up to the next line with an odd number of quotes belong to its record, which
    keeps its first line's number. An opened field still open at the end of the file is a
    structural error naming the line where it starts.
    """
    odd = pl.col(RAW).str.count_matches('"', literal=True) % 2 == 1
    frame = lines.with_columns(odd.alias("_odd")).with_columns(
        (pl.col("_odd") & ~_fully_split(pl.col(RAW), sep)).alias("_opener"),
        pl.when(pl.col("_odd")).then(pl.int_range(pl.len())).forward_fill().shift(1).alias("_last_odd"),
    )
    if not frame.height or not frame["_opener"].any():
        return lines
    last = frame["_last_odd"]  # the last odd line before each line: did it open a field?
    continuation = frame["_opener"].gather(last.fill_null(0)) & last.is_not_null()
    last_odd = frame.filter(pl.col("_odd"))
    if last_odd.height and bool(last_odd["_opener"][-1]):
        raise ExtractError(f"{path}: line {last_odd[LINE][-1]}: bad quoting (a quoted field is never closed)")
    return (
        frame.with_columns((~continuation).cum_sum().alias("_record"))
        .group_by("_record", maintain_order=True)
        .agg(pl.col(FILE).first(), pl.col(LINE).first(), pl.col(RAW).str.join("\n"))
        .select(FILE, LINE, RAW)
    )


def _unquote(value: pl.Expr) -> pl.Expr:
    """A quoted field without its quotes (doubled quotes undone); an unquoted value as is."""
    inner = value.str.slice(1, value.str.len_chars() - 2).str.replace_all('""', '"', literal=True)
    return pl.when(value.str.starts_with('"') & value.str.ends_with('"') & (value.str.len_chars() >= 2)).then(
        inner
    ).otherwise(value)


def parse_header(line: str, sep: str, quoted: bool, source: SourceTable, path: Path) -> tuple[str, ...]:
    """Header names (quotes and spaces removed); raise on duplicates or missing required columns."""
    names = pl.select(_split_quoted(pl.lit(line.removeprefix("\ufeff")), sep).alias("h")).item() if quoted else None
    raw_names = [n[1:] for n in names] if names is not None else line.removeprefix("\ufeff").split(sep)
    header = tuple(n.strip().strip('"').strip() for n in raw_names)
    upper = [n.upper() for n in header]
    duplicated = sorted({n for n in upper if n and upper.count(n) > 1})
    if duplicated:
        raise ExtractError(f"{path}: duplicate column name(s): {', '.join(duplicated)}")
    missing = [c for c in source.required if c.upper() not in upper]
    if missing:
        raise ExtractError(f"{path}: missing required column(s) of {source.name}: {', '.join(missing)}")
    return header


def split_rows(lines: pl.DataFrame, header: tuple[str, ...], sep: str, quoted: bool,
               source: SourceTable) -> pl.LazyFrame:
    """One String column per source column (absent optional ones null), MALFORMED and RAW."""
    n = len(header)
    position = {name.upper(): i for i, name in enumerate(header)}
    frame = lines.lazy()
    if quoted:
        parts = _split_quoted(pl.col(RAW), sep)
        frame = frame.with_columns(_parts=parts).with_columns(
            pl.col("_parts").list.len().alias(N_FIELDS),
            # every character must belong to a field: a stray quote breaks the line
            (pl.col("_parts").list.eval(pl.element().str.len_chars()).list.sum()
             != pl.col(RAW).str.len_chars() + 1).alias("_broken"),
        )
        values = {c: _unquote(pl.col("_parts").list.get(position[c.upper()], null_on_oob=True).str.slice(1))
                  for c in source.columns if c.upper() in position}
    else:
        frame = frame.with_columns(
            (pl.col(RAW).str.count_matches(sep, literal=True) + 1).alias(N_FIELDS),
            pl.lit(False).alias("_broken"),
            pl.col(RAW).str.split_exact(sep, n - 1).alias("_parts"),
        )
        values = {c: pl.col("_parts").struct.field(f"field_{position[c.upper()]}")
                  for c in source.columns if c.upper() in position}
    columns = [values[c].alias(c) if c in values else pl.lit(None, pl.String).alias(c) for c in source.columns]
    malformed = (pl.col(N_FIELDS) != n) | pl.col("_broken")
    return frame.select(
        pl.col(FILE), pl.col(LINE), malformed.alias(MALFORMED),
        pl.when(malformed).then(pl.col(RAW)).alias(RAW), *columns,
    )


def detect_date_format(values: pl.Series, path: Path, column: str) -> str:
    """The known format parsing the most non-empty values; structural error if none fits."""
    stripped = values.str.strip_chars()
    present = stripped.filter(stripped != "").drop_nulls()
    if present.len() == 0:
        return "dd/mm/yyyy"
    parsed: dict[str, int] = {}
    for label, fmt in DATE_FORMATS.items():
        parsed[label] = int(_to_date(present, fmt).is_not_null().sum())
        if parsed[label] == present.len():
            break  # no later format can parse more; ties go to the earlier one anyway
    best = max(parsed, key=lambda label: parsed[label])
    if parsed[best] < MIN_DATE_SHARE * present.len():
        raise ExtractError(
            f"{path}: column {column}: {present.len() - parsed[best]} of {present.len()} dates parse in no known"
            f" format ({', '.join(DATE_FORMATS)})"
        )
    return best


def _to_date(values: pl.Series, fmt: str) -> pl.Series:
    return pl.select(_parse(pl.lit(values), fmt)).to_series()


def _parse(value: pl.Expr, fmt: str) -> pl.Expr:
    shaped = pl.when(value.str.contains(_DATE_SHAPES[fmt])).then(value)
    if "%H" in fmt:
        return shaped.str.to_datetime(fmt, strict=False, time_unit="us").dt.date()
    return shaped.str.to_date(fmt, strict=False)


def date_expr(col: str, fmt: str) -> pl.Expr:
    """The Date of a raw text column written in the given strptime format (null if not a date)."""
    return _parse(pl.col(col).str.strip_chars(), fmt)


def read_source(file: SourceFile, encoding: str = "auto") -> SourceRows:
    """Read one file: formats detected, header checked, rows split, exact duplicate lines dropped."""
    path = file.path
    data = path.read_bytes()
    if not data.strip():
        raise ExtractError(f"{path}: file is empty (no header line)")
    text, used = decode(data, path, encoding)
    del data
    endings = line_endings(text)
    lines = _lines(text)
    quoted = '"' in text
    del text
    header_line = lines[0]
    sep = detect_separator(header_line, path)
    header = parse_header(header_line, sep, quoted, file.source, path)
    body = lines.slice(1)
    nonblank = (body.str.strip_chars() != "").arg_true()
    body = body.slice(0, int(nonblank[-1]) + 1 if len(nonblank) else 0)
    frame = pl.DataFrame({
        LINE: pl.int_range(2, len(body) + 2, dtype=pl.Int64, eager=True),
        RAW: body,
    }).select(pl.lit(path.name, pl.String).alias(FILE), LINE, RAW)
    if quoted:
        frame = merge_quoted_records(frame, sep, path)
    unique = frame.filter(pl.col(RAW).is_first_distinct())
    rows = split_rows(unique, header, sep, quoted, file.source).collect()
    formats: dict[str, str] = {}
    for col in file.source.dates:
        if col.upper() in {h.upper() for h in header}:
            ok = rows.select(pl.col(col).filter(~pl.col(MALFORMED))).to_series()  # one column, not the frame
            formats[col] = detect_date_format(ok, path, col)
    rows = rows.with_columns(
        date_expr(col, DATE_FORMATS[formats.get(col, "dd/mm/yyyy")]).alias(date_column(col))
        for col in file.source.dates
    )
    return SourceRows(
        file=file,
        format=FileFormat(encoding=used, separator=sep, quoted=quoted, date_formats=formats,
                          line_endings=endings),
        rows=rows,
        raw_rows=frame.height,
        duplicates_dropped=frame.height - unique.height,
        header=header,
    )
