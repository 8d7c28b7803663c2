"""Read one extract file as text: encoding, delimiter, quoting and date formats detected and reported.

Every value stays text (quarantine keeps what was written); each row keeps its provenance
(file name, 1-based line number, header = line 1) and, when its field count is wrong, its
raw text. No step holds the file's bytes: a chunked sniff (blank, quotes, line endings), a
chunked UTF-8 check or transcoding only when Polars meets non-UTF-8 bytes, then Polars'
native reader cuts the lines (streaming engine, one text column) and vectorised expressions
split them. Unquoted files keep only a 64-bit hash per line for the exact-duplicate rule and
the raw text of malformed lines; files with quotes go through the RFC 4180 splitter.
"""

from __future__ import annotations

import codecs
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

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
# Bytes absent from text files, tried in turn as the separator that reads each line as one field.
_UNUSED_CANDIDATES: tuple[str, ...] = ("\x1f", "\x1e", "\x1d", "\x1c")
CHUNK_BYTES = 1 << 24  # 16 MiB: the sniff, validation and transcoding buffer
_HASH = "_hash"  # 64-bit hash of a raw line (exact duplicate lines)
_HASH_SEED = 0
_BLANK = "_blank"
_QUOTE = "_quote"
_DATE_SAMPLE = 10_000  # values a date format is first tried on
T = TypeVar("T")


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


def line_endings(text: str) -> str:
    """LF, CRLF or CR: how the file ends its lines (a bare CR in an LF file is data)."""
    if "\r\n" in text:
        return "CRLF"
    return "CR" if "\r" in text and "\n" not in text else "LF"


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


def date_expr_of(value: pl.Expr, fmt: str) -> pl.Expr:
    """The Date of a text expression in the given strptime format, its shape checked (null if not a date)."""
    return _parse(value, fmt)


# --------------------------------------------------------------------------- streaming reads


@dataclass(frozen=True)
class Sniff:
    """What the first chunk of a file's bytes tells (more chunks only while they are all blank)."""

    blank: bool  # only whitespace (or nothing): no header line
    quoted: bool  # a '"' in the first chunk (the data lines are checked by the reader)
    line_endings: str  # LF, CRLF or CR (as ``line_endings``), judged on the first chunk


def sniff(path: Path) -> Sniff:
    """Blank or not, quotes and line endings from the first chunk: the reader does not re-read the file.

    A CRLF in the first chunk makes the file CRLF (Polars drops the CR before each LF in any
    case, so the label is all that depends on it); CR with no LF makes it CR-only.
    """
    with path.open("rb") as handle:
        first = chunk = handle.read(CHUNK_BYTES)
        blank = not chunk.strip()
        while blank and chunk:  # a blank start: look on until a byte that is not whitespace
            chunk = handle.read(CHUNK_BYTES)
            blank = not chunk.strip()
            first = chunk or first
        if first.endswith(b"\r"):  # a CRLF cut by the chunk's end
            first += handle.read(1)
    endings = "CRLF" if b"\r\n" in first else "CR" if b"\r" in first and b"\n" not in first else "LF"
    return Sniff(blank=blank, quoted=b'"' in first, line_endings=endings)


def _invalid(path: Path, encoding: str) -> ExtractError | None:
    """The error naming the first byte that is not ``encoding`` (chunked), None when the file is valid."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 0
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(CHUNK_BYTES)
            pending = decoder.getstate()[0]  # bytes of a character cut by the previous chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                window = pending + chunk
                at = offset - len(pending) + exc.start
                line = lines - pending.count(b"\n") + window.count(b"\n", 0, exc.start) + 1
                bad = window[exc.start : exc.start + 1].hex()
                return ExtractError(
                    f"{path}: not valid {encoding}: byte 0x{bad} at offset {at} (line {line});"
                    " set clean.encoding to auto, cp1252 or latin-1 for SAS exports"
                )
            if not chunk:
                return None
            offset += len(chunk)
            lines += chunk.count(b"\n")


def transcode(path: Path, target: Path, encoding: str) -> None:
    """Rewrite a file as UTF-8, chunk by chunk (an incremental decoder keeps cut characters)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as src, target.open("wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            out.write(decoder.decode(chunk).encode("utf-8"))
        out.write(decoder.decode(b"", final=True).encode("utf-8"))


class _NotUtf8Error(Exception):
    """Polars met bytes that are not UTF-8: the file is transcoded and read again."""


def _first_line(path: Path, eol: bytes) -> str:
    """The header line (BOM and a CR before LF removed), read without the rest of the file."""
    data = b""
    with path.open("rb") as handle:
        while eol not in data:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            data += chunk
    line = data.split(eol, 1)[0].removesuffix(b"\r")
    try:
        return line.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _NotUtf8Error from exc


def _scan_lines(src: Path, eol: str, build: Callable[[pl.LazyFrame], pl.LazyFrame], path: Path) -> pl.DataFrame:
    """Polars' native reader cuts the lines (one text column, no quoting); ``build`` adds the rest.

    The line column is read with a separator absent from text files; a file holding that byte
    too is read with the next candidate (Polars refuses a line with more fields than the schema).
    """
    for unused in _UNUSED_CANDIDATES:
        lines = pl.scan_csv(src, has_header=False, separator=unused, quote_char=None, schema={RAW: pl.String()},
                            eol_char=eol, raise_if_empty=False)
        numbered = lines.with_row_index(LINE, offset=1).select(
            pl.col(LINE).cast(pl.Int64), pl.col(RAW).fill_null("")).filter(pl.col(LINE) >= 2)
        try:
            return build(numbered).collect(engine="streaming")
        except pl.exceptions.ComputeError as exc:
            if "utf-8" in str(exc).lower():
                raise _NotUtf8Error from exc
            if "more fields" not in str(exc):
                raise
    raise ExtractError(f"{path}: every control byte usable to cut lines ({_UNUSED_CANDIDATES!r}) occurs in the file")


def _without_trailing_blanks(frame: pl.DataFrame) -> pl.DataFrame:
    """Blank lines at the end of a file are not rows (an editor's or SAS's final newlines)."""
    nonblank = frame.filter(~pl.col(_BLANK)).get_column(LINE)
    last = int(nonblank[-1]) if len(nonblank) else 1
    return frame.filter(pl.col(LINE) <= last).drop(_BLANK)


def _plain_rows(lines: pl.LazyFrame, path: Path, header: tuple[str, ...], sep: str,
                source: SourceTable) -> pl.LazyFrame:
    """An unquoted file: field count and fields from one split of each line; the text kept only when malformed.

    A 64-bit hash of every line is kept (narrow) so that exact duplicate lines can be found
    without keeping the text of the table.
    """
    n = len(header)
    position = {name.upper(): i for i, name in enumerate(header)}
    n_fields = pl.col(RAW).str.count_matches(sep, literal=True) + 1
    malformed = n_fields != n
    parts = pl.col(RAW).str.split_exact(sep, n - 1)
    columns = [parts.struct.field(f"field_{position[c.upper()]}").alias(c) if c.upper() in position
               else pl.lit(None, pl.String).alias(c) for c in source.columns]
    return lines.select(
        pl.lit(path.name, pl.String).alias(FILE), pl.col(LINE), malformed.alias(MALFORMED),
        pl.when(malformed).then(pl.col(RAW)).alias(RAW), *columns,
        pl.col(RAW).hash(seed=_HASH_SEED).alias(_HASH), (pl.col(RAW).str.strip_chars() == "").alias(_BLANK),
        pl.col(RAW).str.contains('"', literal=True).alias(_QUOTE),
        *(parts.struct.field(f"field_{i}").alias(f"_extra{i}") for i in range(n) if header[i].upper() not in
          {c.upper() for c in source.columns}),
    )


def _line_facts(lines: pl.LazyFrame, path: Path, n: int, sep: str) -> pl.LazyFrame:
    """Per line of an unquoted file: field count check, raw text when malformed, hash, blank, quote."""
    malformed = pl.col(RAW).str.count_matches(sep, literal=True) + 1 != n
    return lines.select(
        pl.lit(path.name, pl.String).alias(FILE), pl.col(LINE), malformed.alias(MALFORMED),
        pl.when(malformed).then(pl.col(RAW)).alias(RAW), pl.col(RAW).hash(seed=_HASH_SEED).alias(_HASH),
        (pl.col(RAW).str.strip_chars() == "").alias(_BLANK), pl.col(RAW).str.contains('"', literal=True).alias(_QUOTE),
    )


def _field_names(header: tuple[str, ...], source: SourceTable) -> list[str]:
    """The name each header position is read under: its source column, else ``_extra<i>``."""
    by_upper = {c.upper(): c for c in source.columns}
    return [by_upper.get(h.upper(), f"_extra{i}") for i, h in enumerate(header)]


def _native_fields(src: Path, eol: str, header: tuple[str, ...], source: SourceTable, sep: str) -> pl.DataFrame:
    """Every data line's fields by Polars' CSV parser, all text, no quoting (one row per line, blank
    lines included; a short line is padded and a long one cut: such lines are malformed anyway)."""
    names = _field_names(header, source)
    frame = pl.scan_csv(src, has_header=False, separator=sep, quote_char=None, schema=dict.fromkeys(names, pl.String()),
                        truncate_ragged_lines=True, empty_string_is_null=False, eol_char=eol, raise_if_empty=False)
    return frame.slice(1).collect(engine="streaming")


def _plain_split(facts: pl.DataFrame, fields: pl.DataFrame, header: tuple[str, ...],
                 source: SourceTable) -> pl.DataFrame:
    """The line facts and the parsed fields side by side, in ``_plain_rows``' column order."""
    present = set(fields.columns)
    columns = [pl.col(c) if c in present else pl.lit(None, pl.String).alias(c) for c in source.columns]
    extras = [c for c in _field_names(header, source) if c.startswith("_extra")]
    return facts.hstack(fields).select(FILE, LINE, MALFORMED, RAW, *columns, _HASH, _BLANK, _QUOTE, *extras)


def _plain_text(header: tuple[str, ...], source: SourceTable, sep: str) -> pl.Expr:
    """A well-formed unquoted line rebuilt from its fields (a split on the separator is invertible)."""
    by_upper = {c.upper(): c for c in source.columns}
    fields = [pl.col(by_upper[h.upper()]) if h.upper() in by_upper else pl.col(f"_extra{i}")
              for i, h in enumerate(header)]
    return pl.when(pl.col(MALFORMED)).then(pl.col(RAW)).otherwise(pl.concat_str(fields, separator=sep))


def repeated_values(values: pl.Series) -> pl.Series:
    """The values occurring twice or more (nulls aside), found by a sort: far faster than a hash
    table over millions of 64-bit hashes, and the repeats are few."""
    ordered = values.drop_nulls().sort()
    return ordered.filter(ordered == ordered.shift(1)).unique()


def _drop_exact_duplicates(frame: pl.DataFrame, line_text: pl.Expr) -> pl.DataFrame:
    """Exact duplicate lines dropped (first kept), found on the hashes and confirmed on the text.

    Only lines whose hash occurs twice or more are compared as text, so a hash collision can
    never drop a line that differs from every earlier one.
    """
    candidates = frame.filter(pl.col(_HASH).is_in(repeated_values(frame.get_column(_HASH)).implode()))
    if candidates.height:
        repeated = candidates.select(pl.col(LINE), line_text.alias("_text")).filter(
            ~pl.col("_text").is_first_distinct()).get_column(LINE)
        frame = frame.filter(~pl.col(LINE).is_in(repeated.implode()))
    return frame


def _quoted_rows(lines: pl.DataFrame, path: Path, header: tuple[str, ...], sep: str,
                 source: SourceTable) -> tuple[pl.DataFrame, int]:
    """A file with quotes: records spanning lines merged, duplicates dropped, RFC 4180 split (expressions)."""
    frame = merge_quoted_records(lines.select(pl.lit(path.name, pl.String).alias(FILE), LINE, RAW), sep, path)
    unique = frame.filter(pl.col(RAW).is_first_distinct())
    return split_rows(unique, header, sep, True, source).collect(), frame.height


def _with_dates(rows: pl.DataFrame, path: Path, header: tuple[str, ...],
                source: SourceTable) -> tuple[pl.DataFrame, dict[str, str]]:
    """Each date column's format (detected on the well-formed rows) and its parsed Date beside it."""
    present = {h.upper() for h in header}
    formats: dict[str, str] = {}
    parsed: list[pl.Series] = []
    for col in source.dates:
        if col.upper() in present:
            label, dates = detect_and_parse(rows, path, col)
            formats[col] = label
            parsed.append(dates.alias(date_column(col)))
        else:
            parsed.append(pl.Series(date_column(col), [None] * rows.height, dtype=pl.Date))
    return rows.with_columns(parsed), formats


def detect_and_parse(rows: pl.DataFrame, path: Path, col: str) -> tuple[str, pl.Series]:
    """The column's format and its dates: the format a sample suggests is confirmed on every value.

    The known formats' shapes exclude each other, so a format parsing every present value is
    the one ``detect_date_format`` picks; otherwise it decides on the whole column.
    """
    value = pl.col(col).str.strip_chars()
    present = ~pl.col(MALFORMED) & (value != "")
    sample = pl.Series(col, [], dtype=pl.String)
    for head in (rows.head(10 * _DATE_SAMPLE), rows):  # the first rows, else the whole column
        sample = head.select(value.filter(present).head(_DATE_SAMPLE)).to_series()
        if sample.len():
            break
    guess = next((label for label, fmt in DATE_FORMATS.items()
                  if sample.len() and bool(_to_date(sample, fmt).is_not_null().all())), None)
    if guess is not None:
        dates = parse_dates(rows.get_column(col), DATE_FORMATS[guess])
        unparsed = rows.select(present).to_series() & dates.is_null()
        if not unparsed.any():
            return guess, dates
    ok = rows.select(pl.col(col).filter(~pl.col(MALFORMED))).to_series()
    label = detect_date_format(ok, path, col)
    return label, parse_dates(rows.get_column(col), DATE_FORMATS[label])


def parse_dates(values: pl.Series, fmt: str) -> pl.Series:
    """``date_expr`` over a column, computed once per distinct text (a date column repeats its days)."""
    distinct = values.unique().drop_nulls()
    table = pl.DataFrame({"_text": distinct}).with_columns(
        _parse(pl.col("_text").str.strip_chars(), fmt).alias("_date"))
    looked_up = pl.DataFrame({"_text": values}).join(table, on="_text", how="left", maintain_order="left")
    return looked_up.get_column("_date")


def _read_utf8(file: SourceFile, src: Path, used: str, found: Sniff) -> SourceRows:
    """Read a UTF-8 file (the original or its transcoded copy) whose provenance is ``file``."""
    path = file.path
    eol = "\r" if found.line_endings == "CR" else "\n"
    header_line = _first_line(src, eol.encode())
    sep = detect_separator(header_line, path)
    header = parse_header(header_line, sep, found.quoted, file.source, path)
    quoted = found.quoted or '"' in header_line
    if not quoted:  # facts of every line first; a quote met in the data sends the file to the RFC 4180 path
        facts = _scan_lines(src, eol, lambda f: _line_facts(f, path, len(header), sep), path)
        quoted = bool(facts.get_column(_QUOTE).any())
    if not quoted:  # fields by the native parser, side by side with the facts when it saw the same lines
        fields = _native_fields(src, eol, header, file.source, sep)
        if fields.height == facts.height:
            split = _plain_split(facts, fields, header, file.source)
        else:  # pragma: no cover - a line the two readers cut differently: split the lines instead
            split = _scan_lines(src, eol, lambda f: _plain_rows(f, path, header, sep, file.source), path)
        del facts, fields
    if quoted:
        lines = _without_trailing_blanks(_scan_lines(
            src, eol, lambda f: f.with_columns((pl.col(RAW).str.strip_chars() == "").alias(_BLANK)), path))
        rows, raw_rows = _quoted_rows(lines, path, header, sep, file.source)
    else:
        split = _without_trailing_blanks(split.drop(_QUOTE))
        raw_rows = split.height
        rows = _drop_exact_duplicates(split, _plain_text(header, file.source, sep))
        rows = rows.drop(_HASH, *(c for c in rows.columns if c.startswith("_extra")))
    rows, formats = _with_dates(rows, path, header, file.source)
    return SourceRows(
        file=file,
        format=FileFormat(encoding=used, separator=sep, quoted=quoted, date_formats=formats,
                          line_endings=found.line_endings),
        rows=rows,
        raw_rows=raw_rows,
        duplicates_dropped=raw_rows - rows.height,
        header=header,
    )


def read_source(file: SourceFile, encoding: str = "auto") -> SourceRows:
    """Read one file: formats detected, header checked, rows split, exact duplicate lines dropped.

    Nothing holds the file's bytes or text: a chunked sniff, then Polars' reader over the file.
    A file that is not UTF-8 ("auto": CP1252, else Latin-1) is transcoded chunk by chunk to a
    temporary UTF-8 copy, which is read the same way.
    """
    found = sniff(file.path)
    return as_utf8(file, encoding, found, lambda src, used: _read_utf8(file, src, used, found))


def as_utf8(file: SourceFile, encoding: str, found: Sniff, body: Callable[[Path, str], T]) -> T:
    """``body(utf8_path, encoding_used)`` over the file, or over a UTF-8 copy when it is not UTF-8.

    "auto" tries UTF-8, then CP1252, then Latin-1; the copy lives only while ``body`` runs.
    """
    path = file.path
    if found.blank:
        raise ExtractError(f"{path}: file is empty (no header line)")
    if encoding in ("auto", "utf-8"):
        try:
            return body(path, "utf-8")
        except _NotUtf8Error:
            if encoding == "utf-8":
                error = _invalid(path, "utf-8")
                if error is not None:
                    raise error from None
                raise
    for candidate in ("cp1252", "latin-1") if encoding == "auto" else (encoding,):
        error = _invalid(path, candidate)
        if error is None:
            with tempfile.TemporaryDirectory(prefix="snds-utf8-") as tmp:
                utf8 = Path(tmp) / path.name
                transcode(path, utf8, candidate)
                return body(utf8, candidate)
        if encoding != "auto":
            raise error
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover
