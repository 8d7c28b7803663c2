"""Spill a large extract file to hash partitions, then read one partition at a time.

A table too large to clean in one piece (``clean.partition_mb``) is cleaned partition by
partition. Its files are cut into the same number of partitions by a hash of key columns
(``ETA_NUM`` and ``RSA_NUM`` for the PMSI tables, ``DCT_ORD_NUM`` for DCIR, ``BEN_NIR_PSA`` for
IR_BEN_R), each made canonical so that values a join or a duplicate key equate hash alike.
Every join key, duplicate key and exact duplicate line of the table then lies inside one
partition, so a partition's rows go through the same ingest and rules as a whole table would.

One streaming pass per file (Polars' line reader, nothing held) writes each data line's number
and text to Parquet under its partition, with a few facts per line: blank, holds a quote, and
for each date column whether the value is present and whether it parses in the format a first
sample suggests. The facts decide, for the whole file, what the whole-file reader decides: the
last non-blank line (trailing blank lines are not rows), and each date column's format (the
sampled format when it parses more than half of the present values, which no other format can
then beat: the formats' shapes exclude each other; else a count over every value). A file with
quotes anywhere is not spilled: RFC 4180 records may span lines, so it is read whole.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.snds.discover import SourceFile
from pipelines.snds.errors import ExtractError
from pipelines.snds.read import (
    _BLANK,
    _DATE_SAMPLE,
    _HASH,
    _QUOTE,
    _UNUSED_CANDIDATES,
    DATE_FORMATS,
    LINE,
    MALFORMED,
    MIN_DATE_SHARE,
    RAW,
    FileFormat,
    Sniff,
    SourceRows,
    _drop_exact_duplicates,
    _first_line,
    _NotUtf8Error,
    _parse,
    _plain_rows,
    _plain_text,
    as_utf8,
    date_column,
    detect_separator,
    parse_dates,
    parse_header,
    sniff,
)

PART = "_part"
_HEAD_LINES = 10 * _DATE_SAMPLE  # lines the date formats are first guessed on (as the whole-file reader)
_PARTITION_SEED = 7
_PRESENT = "_dp__"
_UNPARSED = "_du__"
_FIELDS = "_fields"


@dataclass(frozen=True)
class SpilledFile:
    """A file cut into partitions: how it was read and where each partition's lines are."""

    file: SourceFile
    format: FileFormat
    header: tuple[str, ...]
    folder: Path  # <folder>/_part=<p>/*.parquet
    last_line: int  # the last non-blank line (header = 1): later lines are not rows

    def part_files(self, part: int) -> list[Path]:
        return sorted((self.folder / f"{PART}={part}").glob("*.parquet"))


def partition_of(values: Sequence[pl.Expr], parts: int) -> pl.Expr:
    """The partition of a row from its key values (null -> partition 0).

    Each value is canonical before hashing: an integer as its number ('+042' and '42' alike, as
    the rules parse RSA_NUM), else its trimmed text without leading zeros (as the joins compare
    it). Values equal for a join or a duplicate key are then equal here, so they meet.
    """
    canonical = []
    for value in values:
        trimmed = value.str.strip_chars()
        unpadded = trimmed.str.strip_chars_start("0")
        text = pl.when((unpadded == "") & (trimmed != "")).then(pl.lit("0")).otherwise(unpadded)
        number = pl.when(trimmed.str.contains(r"^[+-]?[0-9]+$")).then(trimmed).cast(pl.Int64, strict=False)
        canonical.append(pl.coalesce(number.cast(pl.String), text))
    key = canonical[0] if len(canonical) == 1 else pl.concat_str(canonical, separator="\x1f")
    return pl.when(key.is_not_null()).then(key.hash(seed=_PARTITION_SEED) % parts).otherwise(0).cast(pl.UInt32)


def _field(sep: str, position: int) -> pl.Expr:
    return pl.col(RAW).str.split_exact(sep, position).struct.field(f"field_{position}")


def _split_field(position: int) -> pl.Expr:
    """A field of the line's one split (``_FIELDS``, made once per line for every fact)."""
    return pl.col(_FIELDS).struct.field(f"field_{position}")


def _positions(header: tuple[str, ...]) -> dict[str, int]:
    return {name.upper(): i for i, name in enumerate(header)}


def _guess_formats(src: Path, eol: str, header: tuple[str, ...], sep: str, file: SourceFile) -> dict[str, str | None]:
    """Per date column, the first format parsing every value of a first sample (None: no such format)."""
    present_cols = [c for c in file.source.dates if c.upper() in _positions(header)]
    if not present_cols:
        return {}
    head = pl.scan_csv(src, has_header=False, separator=_UNUSED_CANDIDATES[0], quote_char=None,
                       schema={RAW: pl.String()}, eol_char=eol, raise_if_empty=False, n_rows=_HEAD_LINES + 1)
    lines = head.with_row_index(LINE, offset=1).select(pl.col(LINE).cast(pl.Int64), pl.col(RAW).fill_null(""))
    try:
        rows = _plain_rows(lines.filter(pl.col(LINE) >= 2), file.path, header, sep, file.source).collect()
    except pl.exceptions.ComputeError as exc:
        if "utf-8" in str(exc).lower():
            raise _NotUtf8Error from exc
        return dict.fromkeys(present_cols)  # a control byte in the head: decided on every value instead
    guesses: dict[str, str | None] = {}
    for col in present_cols:
        value = pl.col(col).str.strip_chars()
        sample = rows.select(value.filter(~pl.col(MALFORMED) & (value != "")).head(_DATE_SAMPLE)).to_series()
        guesses[col] = next((label for label, fmt in DATE_FORMATS.items() if sample.len() and bool(
            pl.select(_parse(pl.lit(sample), fmt).is_not_null().all()).item())), None)
    return guesses


def _line_facts(header: tuple[str, ...], sep: str, guesses: dict[str, str | None]) -> list[pl.Expr]:
    """Blank, quote and, per date column, present / unparsed-in-the-guessed-format flags of a line."""
    well_formed = pl.col(RAW).str.count_matches(sep, literal=True) + 1 == len(header)
    facts = [(pl.col(RAW).str.strip_chars() == "").alias(_BLANK),
             pl.col(RAW).str.contains('"', literal=True).alias(_QUOTE)]
    positions = _positions(header)
    for col, guess in guesses.items():
        value = _split_field(positions[col.upper()]).str.strip_chars()
        present = well_formed & (value != "")
        unparsed = present if guess is None else present & _parse(value, DATE_FORMATS[guess]).is_null()
        facts += [present.alias(_PRESENT + col), unparsed.alias(_UNPARSED + col)]
    return facts


def _sink_lines(src: Path, eol: str, fields: pl.Expr, frame_of: pl.Expr, facts: list[pl.Expr], folder: Path,
                path: Path) -> None:
    """Every data line (number, text, partition, facts) to Parquet under its partition's folder."""
    for unused in _UNUSED_CANDIDATES:
        shutil.rmtree(folder, ignore_errors=True)
        lines = pl.scan_csv(src, has_header=False, separator=unused, quote_char=None, schema={RAW: pl.String()},
                            eol_char=eol, raise_if_empty=False)
        numbered = lines.with_row_index(LINE, offset=1).select(
            pl.col(LINE).cast(pl.Int64), pl.col(RAW).fill_null("")).filter(pl.col(LINE) >= 2)
        query = numbered.with_columns(fields.alias(_FIELDS)).with_columns(frame_of.alias(PART), *facts).drop(_FIELDS)
        try:
            query.sink_parquet(pl.PartitionBy(folder, key=PART, include_key=False), compression="lz4",
                               mkdir=True, engine="streaming")
            return
        except pl.exceptions.ComputeError as exc:
            if "utf-8" in str(exc).lower():
                raise _NotUtf8Error from exc
            if "more fields" not in str(exc):
                raise
    raise ExtractError(f"{path}: every control byte usable to cut lines ({_UNUSED_CANDIDATES!r}) occurs in the file")


def _count_formats(files: list[Path], header: tuple[str, ...], sep: str, col: str,
                   last_line: int) -> dict[str, int]:
    """Present values of a date column parsing in each known format, over every line (bounded memory)."""
    position = _positions(header)[col.upper()]
    well_formed = pl.col(RAW).str.count_matches(sep, literal=True) + 1 == len(header)
    value = _field(sep, position).str.strip_chars()
    scan = (pl.scan_parquet(files).filter((pl.col(LINE) <= last_line) & well_formed & (value != ""))
            .unique(subset=[RAW]))  # as the whole-file reader: exact duplicate lines count once
    parsed = [_parse(value, fmt).is_not_null().sum().alias(label) for label, fmt in DATE_FORMATS.items()]
    counts = scan.select(pl.len().alias("_present"), *parsed).collect(engine="streaming")
    return {name: int(counts[name].item()) for name in counts.columns}


def _decide_formats(spill: list[Path], header: tuple[str, ...], sep: str, guesses: dict[str, str | None],
                    facts: pl.DataFrame, last_line: int, path: Path) -> dict[str, str]:
    """Each date column's format for the whole file (see the module docstring)."""
    formats: dict[str, str] = {}
    for col, guess in guesses.items():
        present, unparsed = int(facts[_PRESENT + col].item()), int(facts[_UNPARSED + col].item())
        if present == 0:
            formats[col] = "dd/mm/yyyy"  # as detect_date_format: nothing to decide on
        elif guess is not None and 2 * unparsed < present:
            formats[col] = guess
        else:
            counts = _count_formats(spill, header, sep, col, last_line)
            total = counts.pop("_present")
            best = max(counts, key=lambda label: counts[label])  # ties: the earlier format, as the reader
            if counts[best] < MIN_DATE_SHARE * total:
                raise ExtractError(f"{path}: column {col}: {total - counts[best]} of {total} dates parse in no"
                                   f" known format ({', '.join(DATE_FORMATS)})")
            formats[col] = best
    return formats


def _empty_spill(guesses: dict[str, str | None]) -> pl.LazyFrame:
    schema: dict[str, pl.DataType] = {LINE: pl.Int64(), RAW: pl.String(), _BLANK: pl.Boolean(), _QUOTE: pl.Boolean()}
    schema |= {c: pl.Boolean() for g in guesses for c in (_PRESENT + g, _UNPARSED + g)}
    return pl.LazyFrame(schema=schema)


def _spill_utf8(file: SourceFile, src: Path, used: str, found: Sniff, parts: int, key_columns: Sequence[str],
                folder: Path) -> SpilledFile | None:
    path = file.path
    eol = "\r" if found.line_endings == "CR" else "\n"
    header_line = _first_line(src, eol.encode())
    if '"' in header_line:
        return None
    sep = detect_separator(header_line, path)
    header = parse_header(header_line, sep, False, file.source, path)
    positions = [_positions(header).get(c.upper()) for c in key_columns]
    part = (partition_of([_split_field(i) for i in positions if i is not None], parts)
            if None not in positions else pl.lit(0, pl.UInt32))
    guesses = _guess_formats(src, eol, header, sep, file)
    used_positions = [i for i in positions if i is not None] + [_positions(header)[c.upper()] for c in guesses]
    fields = pl.col(RAW).str.split_exact(sep, max(used_positions, default=0))
    _sink_lines(src, eol, fields, part, _line_facts(header, sep, guesses), folder, path)
    spill = sorted(folder.rglob("*.parquet"))
    summary = [pl.col(_QUOTE).any().alias(_QUOTE), pl.col(LINE).filter(~pl.col(_BLANK)).max().alias(LINE),
               *(pl.col(c).sum() for g in guesses for c in (_PRESENT + g, _UNPARSED + g))]
    # no data line at all: nothing was written
    lines = pl.scan_parquet(spill) if spill else _empty_spill(guesses)
    facts = lines.select(summary).collect()
    if bool(facts[_QUOTE].item()):
        shutil.rmtree(folder)
        return None
    last = facts[LINE].item()
    last_line = int(last) if last is not None else 1
    formats = _decide_formats(spill, header, sep, guesses, facts, last_line, path)
    fmt = FileFormat(encoding=used, separator=sep, quoted=False, date_formats=formats,
                     line_endings=found.line_endings)
    return SpilledFile(file=file, format=fmt, header=header, folder=folder, last_line=last_line)


def spill_file(file: SourceFile, encoding: str, parts: int, key_columns: Sequence[str],
               folder: Path) -> SpilledFile | None:
    """Cut one file into ``parts`` partitions by ``key_columns`` under ``folder``; None when it has quotes."""
    found = sniff(file.path)
    if not found.blank and found.quoted:
        return None
    return as_utf8(file, encoding, found,
                   lambda src, used: _spill_utf8(file, src, used, found, parts, key_columns, folder))


def read_part(spilled: SpilledFile, part: int) -> SourceRows:
    """The rows of one partition of a spilled file, as ``read_source`` gives a whole file's."""
    file, header, sep = spilled.file, spilled.header, spilled.format.separator
    files = spilled.part_files(part)
    if files:
        lines = pl.scan_parquet(files).select(LINE, RAW).filter(pl.col(LINE) <= spilled.last_line)
    else:
        lines = pl.LazyFrame(schema={LINE: pl.Int64(), RAW: pl.String()})
    split = _plain_rows(lines, file.path, header, sep, file.source).drop(_BLANK, _QUOTE).collect()
    raw_rows = split.height
    rows = _drop_exact_duplicates(split, _plain_text(header, file.source, sep))
    rows = rows.drop(_HASH, *(c for c in rows.columns if c.startswith("_extra")))
    present = {h.upper() for h in header}
    dates = [parse_dates(rows.get_column(c), DATE_FORMATS[spilled.format.date_formats[c]]).alias(date_column(c))
             if c.upper() in present else pl.Series(date_column(c), [None] * rows.height, dtype=pl.Date)
             for c in file.source.dates]
    return SourceRows(file=file, format=spilled.format, rows=rows.with_columns(dates), raw_rows=raw_rows,
                      duplicates_dropped=raw_rows - rows.height, header=header)
