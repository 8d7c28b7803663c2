"""Stack the yearly tables and join the SNDS sources into the five logical raw tables.

* stays = T_MCOaaB (driving) ⋈ T_MCOaaC ⋈ T_MCOaaVALO on (year, ETA_NUM, RSA_NUM), every year stacked
  with its PMSI year as part of the key (RSA_NUM restarts each year);
* diagnoses = T_MCOaaD stacked the same way;
* dispensings = ER_PHA_F (driving) ⋈ ER_PRS_F on the nine DCIR keys, ⋈ IR_PHA_R on the CIP13 code;
* hospitals = BE_IDE_R ⋈ the external FINESS/SAE extract (not SNDS) on the FINESS number;
* patients = IR_BEN_R.

A linked row is joined to at most one driving row. Linked rows that cannot be joined are
rejected here with their reason (``malformed_line``, ``duplicate_key``, ``orphan_row``) and
their provenance, so every raw row of every file is accounted for downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.contracts import PMSI_YEAR_COLUMN, RAW_TABLES, SOURCES, RawTable, SourceTable
from pipelines.snds.discover import SourceFile, discover
from pipelines.snds.errors import ExtractError
from pipelines.snds.read import (
    DATE_FORMATS,
    DATE_SUFFIX,
    FILE,
    LINE,
    MALFORMED,
    RAW,
    SourceRows,
    date_column,
    date_expr_of,
    read_source,
    repeated_values,
)

REASON = "reason"
DETAIL = "detail"
UNLINKED = "_unlinked"  # name of a required linked table with no row for this driving row
VALUED = "_valued"  # a valuation table exists for this row's year (stays only)


def link_file_col(source: str) -> str:
    return f"_file__{source}"


def link_line_col(source: str) -> str:
    return f"_line__{source}"


@dataclass(frozen=True)
class FileAccount:
    """One file read: what it is, how it was read, its raw and duplicate line counts."""

    file: str
    source: str
    year: int | None
    raw_rows: int
    duplicates_dropped: int
    format: dict[str, Any]
    role: str  # driving | link | lookup


@dataclass
class Ingested:
    """A logical raw table ready for clean's rules."""

    table: RawTable
    rows: pl.DataFrame  # driving rows: FILE, LINE, RAW, MALFORMED, RawTable.columns, dates, link provenance
    rejected: pl.DataFrame  # linked rows rejected before the join (FILE, LINE, RAW, REASON, DETAIL, columns)
    files: list[FileAccount] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # degradations: a missing table and what is done instead
    has_valuation: bool = True


Reader = Callable[[SourceFile, str], SourceRows]


@dataclass
class Extract:
    """The discovered files of an extract folder, read on demand.

    ``reader`` reads one file (``read_source`` by default; a partition's reader for a table
    cleaned in partitions). With ``count_lookups`` false, referential files (IR_PHA_R, the
    FINESS/SAE extract) are joined but neither accounted nor their rejects kept: every
    partition joins them, only the first one counts them. ``partial``: the reader gives a part
    of each file, so whole-file checks (a required table without data rows) are the caller's.
    """

    folder: Path
    encoding: str = "auto"
    files: dict[str, list[SourceFile]] = field(default_factory=dict)
    reader: Reader = read_source
    count_lookups: bool = True
    partial: bool = False

    @classmethod
    def open(cls, folder: Path, encoding: str = "auto") -> Extract:
        extract = cls(folder, encoding, discover(folder))
        extract.check_required()
        return extract

    def check_required(self) -> None:
        """Tables the analytics cannot do without: a structural error naming the table and its columns."""
        for name in ("IR_BEN_R", "BE_IDE_R", "T_MCOaaB", "T_MCOaaC"):
            if not self.files[name]:
                src = SOURCES[name]
                raise ExtractError(
                    f"{self.folder}: no file for {name} (expected a name like {src.file_name(2023)},"
                    f" .csv or .txt, any case; columns {', '.join(src.required)})"
                )
        b_years = {f.year for f in self.files["T_MCOaaB"]}
        c_years = {f.year for f in self.files["T_MCOaaC"]}
        if b_years - c_years:
            year = min(y for y in b_years - c_years if y is not None)
            raise ExtractError(
                f"{self.folder}: T_MCO{year % 100:02d}B has no T_MCO{year % 100:02d}C beside it"
                f" (patient id NIR_ANO_17 and dates EXE_SOI_DTD/EXE_SOI_DTF of the {year} stays)"
            )
        if self.files["ER_PHA_F"] and not self.files["ER_PRS_F"]:
            raise ExtractError(
                f"{self.folder}: ER_PHA_F without ER_PRS_F (BEN_NIR_PSA, EXE_SOI_DTD, BSE_REM_MNT live there)"
            )

    def read(self, name: str) -> list[SourceRows]:
        return [self.reader(f, self.encoding) for f in self.files[name]]

    def partition(self, reader: Reader, *, count_lookups: bool) -> Extract:
        """The same extract read through a partition's ``reader``."""
        return replace(self, reader=reader, count_lookups=count_lookups, partial=True)


def _empty_rows(source: SourceTable) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {FILE: pl.String(), LINE: pl.Int64(), MALFORMED: pl.Boolean(), RAW: pl.String()}
    schema |= {c: pl.String() for c in source.columns}
    schema |= {date_column(c): pl.Date() for c in source.dates}
    return pl.DataFrame(schema=schema)


def _stack(parts: Sequence[SourceRows], source: SourceTable) -> pl.DataFrame:
    """Rows of every file of a source, with the PMSI year column for yearly tables."""
    frames = [
        p.rows.with_columns(pl.lit(str(p.file.year)).alias(PMSI_YEAR_COLUMN)) if source.yearly else p.rows
        for p in parts
    ]
    if not frames:
        empty = _empty_rows(source)
        return empty.with_columns(pl.lit(None, pl.String).alias(PMSI_YEAR_COLUMN)) if source.yearly else empty
    return pl.concat(frames, how="vertical")


def _key_exprs(cols: Sequence[str], dates: Sequence[str] = ()) -> list[pl.Expr]:
    """Join keys as both sides may write them: trimmed text, numbers without leading zeros
    ('0000000042' = '42', as an integer-typed export writes it), dates compared as dates
    (each file's own format: '01/02/2023' in ER_PRS_F joins '2023-02-01' in ER_PHA_F).
    """
    out = []
    for i, c in enumerate(cols):
        trimmed = pl.col(c).str.strip_chars()
        unpadded = trimmed.str.strip_chars_start("0")
        value = pl.when((unpadded == "") & (trimmed != "")).then(pl.lit("0")).otherwise(unpadded)
        if c in dates:
            value = _date_key(pl.col(date_column(c)), value)
        out.append(value.alias(f"_k{i}"))
    return out


def _date_key(parsed: pl.Expr, text: pl.Expr) -> pl.Expr:
    """A date key compared as a date, else as its text (as ``coalesce(date as ISO text, text)`` would
    compare, without formatting every date): a text that is an ISO date counts as that date.
    """
    day = pl.coalesce(parsed, date_expr_of(text, DATE_FORMATS["iso"]))
    return pl.when(day.is_not_null() | text.is_not_null()).then(
        pl.struct(day.alias("day"), pl.when(day.is_null()).then(text).alias("text")))


# A key of any width is joined on two 64-bit hashes of its normalised values (different seeds):
# two UInt64 columns instead of up to nine text columns, and a false match needs both 64-bit
# hashes of two different keys to collide at once.
HASHED_KEY: tuple[str, ...] = ("_h0", "_h1")
_SEEDS: tuple[int, ...] = (11, 23)
_COMPLETE = "_key_complete"


def with_key_hashes(frame: pl.DataFrame, cols: Sequence[str], dates: Sequence[str] = (), *,
                    joinable: pl.Expr | None = None) -> pl.DataFrame:
    """``frame`` with HASHED_KEY of its normalised key (``_key_exprs``), each value computed once.

    With ``joinable`` (the join side), the hashes are null where a key value is null (null keys
    never match, as in a join on the values) or where ``joinable`` is false; without it (the
    duplicate-key side), rows with the same values, nulls alike, get the same hashes, and
    ``_COMPLETE`` tells whether every value is present (``joinable_hashes`` nulls the others).
    """
    names = [f"_k{i}" for i in range(len(cols))]
    key = pl.struct(names)
    hashes = [key.hash(seed=seed) for seed in _SEEDS]
    complete = pl.all_horizontal([pl.col(n).is_not_null() for n in names])
    extra = []
    if joinable is not None:
        hashes = [pl.when(complete & joinable).then(h) for h in hashes]
    else:
        extra = [complete.alias(_COMPLETE)]
    return (frame.lazy().with_columns(_key_exprs(cols, dates))
            .with_columns(*(h.alias(n) for h, n in zip(hashes, HASHED_KEY, strict=True)), *extra)
            .drop(names).collect())


def joinable_hashes(frame: pl.DataFrame) -> pl.DataFrame:
    """Duplicate-key hashes (``with_key_hashes`` without ``joinable``) made join hashes."""
    complete = pl.col(_COMPLETE)
    return frame.with_columns(pl.when(complete).then(pl.col(n)).alias(n) for n in HASHED_KEY).drop(_COMPLETE)


def _key_text(cols: Sequence[str]) -> pl.Expr:
    return pl.concat_str([pl.format(f"{c}='{{}}'", pl.col(c).fill_null("")) for c in cols], separator=", ")


def _reject(frame: pl.DataFrame, reason: str, detail: pl.Expr) -> pl.DataFrame:
    return frame.with_columns(pl.lit(reason).alias(REASON), detail.alias(DETAIL))


def _first_of_key(hashed: pl.DataFrame, keys: list[str]) -> pl.Series:
    """True for a well-formed row whose key no earlier well-formed row has (rows in file, then line
    order; a malformed row's key takes nothing from the others). Only rows whose first hash repeats
    are compared (found by a sort; see ``repeated_values``)."""
    repeated = repeated_values(hashed.get_column(keys[0])).implode()
    candidates = hashed.select(pl.int_range(pl.len()).alias("_i"), *keys, MALFORMED).filter(
        pl.col(keys[0]).is_in(repeated))
    later = candidates.filter(~pl.when(~pl.col(MALFORMED)).then(pl.struct(keys)).is_first_distinct()).get_column("_i")
    return hashed.select(~pl.int_range(pl.len()).is_in(later.implode())).to_series()


def _dedupe_linked(rows: pl.DataFrame, key: Sequence[str], dates: Sequence[str] = ()
                   ) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Split linked rows into joinable ones (one per key) and rejects (malformed, duplicate key).

    Joinable rows carry HASHED_KEY (null when a key value is null: such a row joins nothing).
    """
    keys = list(HASHED_KEY)
    well_formed = ~pl.col(MALFORMED)
    hashed = with_key_hashes(rows, key, dates)
    hashed = hashed.with_columns(_first_of_key(hashed, keys).alias("_is_first"))
    malformed = rows.filter(pl.col(MALFORMED))
    del rows  # one filtered copy at a time: the caller's frame and the kept rows
    kept = hashed.filter(well_formed & pl.col("_is_first")).drop("_is_first")
    dups = hashed.filter(well_formed & ~pl.col("_is_first")).drop("_is_first")
    del hashed
    if dups.height:  # rare: name the line that holds the key
        holders = kept.select(*keys, pl.col(LINE).alias("_first"), pl.col(FILE).alias("_ff"))
        dups = dups.join(holders, on=keys, how="left", maintain_order="left").drop(_COMPLETE)
    else:
        dups = dups.drop(_COMPLETE).with_columns(pl.lit(None, pl.Int64).alias("_first"),
                                                 pl.lit(None, pl.String).alias("_ff"))
    kept = joinable_hashes(kept)
    rejects = [
        _reject(malformed, "malformed_line", pl.lit("wrong number of fields or broken quoting")),
        _reject(dups, "duplicate_key", pl.concat_str(
            [_key_text(key), pl.lit(": key already used by line "), pl.col("_first").cast(pl.String),
             pl.lit(" of "), pl.col("_ff")])).drop("_first", "_ff"),
    ]
    return kept, rejects


def _link(driving: pl.DataFrame, linked: pl.DataFrame, source: SourceTable, on: Sequence[str],
          driving_src: SourceTable) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Left-join one linked source (unique per key) onto the driving rows; reject orphans."""
    keys = list(HASHED_KEY)
    joinable, rejects = _dedupe_linked(linked, on, source.dates)
    # A malformed driving line's fields are unreliable: it joins nothing (null keys never match).
    driving_side = with_key_hashes(driving, on, driving_src.dates, joinable=~pl.col(MALFORMED))
    driving_keys = driving_side.lazy().filter(~pl.col(MALFORMED)).select(keys).unique().collect()
    orphans = joinable.join(driving_keys, on=keys, how="anti")
    rejects.append(_reject(orphans, "orphan_row", pl.concat_str(
        [_key_text(on), pl.lit(f": no {driving_src.name} row with this key")])))
    # key columns (and their parsed dates) are the driving row's already
    own = [c for c in (*source.columns, *(date_column(d) for d in source.dates))
           if c.removesuffix(DATE_SUFFIX) not in on]
    right = joinable.select(
        *keys, *own, pl.col(FILE).alias(link_file_col(source.name)), pl.col(LINE).alias(link_line_col(source.name))
    )
    joined = (
        driving_side.join(right, on=keys, how="left", maintain_order="left", coalesce=True)
        .drop(keys)
    )
    return joined, [r.drop(keys, strict=False) for r in rejects]


def _lookup(driving: pl.DataFrame, ref: pl.DataFrame, source: SourceTable, left: Sequence[str],
            right: Sequence[str]) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Many-to-one join of a referential (unique per key); its unused rows are fine."""
    joinable, rejects = _dedupe_linked(ref, right)
    keys = list(HASHED_KEY)
    own = [c for c in source.columns if c not in right]
    table = joinable.select(*keys, *own)
    joined = (
        with_key_hashes(driving, left, joinable=pl.lit(True))
        .join(table, on=keys, how="left", maintain_order="left", coalesce=True)
        .drop(keys)
    )
    return joined, [r.drop(keys, strict=False) for r in rejects]


def _accounts(parts: Sequence[SourceRows], role: str) -> list[FileAccount]:
    return [
        FileAccount(file=p.file.path.name, source=p.file.source.name, year=p.file.year, raw_rows=p.raw_rows,
                    duplicates_dropped=p.duplicates_dropped, format=p.format.describe(), role=role)
        for p in parts
    ]


def _missing_note(source: SourceTable, detail: str = "") -> str:
    where = f" {detail}" if detail else ""
    return (f"{source.name}{where} not in the extract (columns {', '.join(source.required)}):"
            f" {source.without}")


def ingest_table(extract: Extract, name: str) -> Ingested:
    """The logical raw table ``name`` (contracts.RAW_TABLES) of an extract."""
    table = RAW_TABLES[name]
    driving_src = SOURCES[table.driving]
    parts = extract.read(table.driving)
    files = _accounts(parts, "driving")
    notes: list[str] = []
    if not parts and driving_src.optional:
        notes.append(_missing_note(driving_src))
    if parts and not extract.partial and not driving_src.optional and not any(p.rows.height for p in parts):
        raise ExtractError(f"{parts[0].file.path}: header but no data row ({driving_src.name} is required)")
    rows = _stack(parts, driving_src)
    del parts
    rejected: list[pl.DataFrame] = []
    has_valuation = True
    for link_name in table.links:
        link_src = SOURCES[link_name]
        link_parts = extract.read(link_name)
        files += _accounts(link_parts, "link")
        on = [PMSI_YEAR_COLUMN, *link_src.key] if link_src.yearly else list(link_src.key)
        driving_years = sorted({f.year for f in extract.files[table.driving] if f.year is not None})
        link_years = {p.file.year for p in link_parts}
        if link_src.optional:
            missing_years = [y for y in driving_years if y not in link_years]
            if link_src.yearly and missing_years:
                notes.append(_missing_note(link_src, "for " + ", ".join(str(y) for y in missing_years)))
            elif not link_src.yearly and not link_parts and rows.height:
                notes.append(_missing_note(link_src))
            if link_name == "T_MCOaaVALO":
                has_valuation = bool(link_years)
                rows = rows.with_columns(
                    pl.col(PMSI_YEAR_COLUMN).is_in([str(y) for y in link_years]).alias(VALUED))
        rows, rejects = _link(rows, _stack(link_parts, link_src), link_src, on, driving_src)
        rejected += rejects
        if not link_src.optional or link_name == "ER_PRS_F":
            rows = rows.with_columns(
                pl.when(~pl.col(MALFORMED) & pl.col(link_line_col(link_name)).is_null())
                .then(pl.lit(link_name)).otherwise(pl.col(UNLINKED) if UNLINKED in rows.columns else None)
                .alias(UNLINKED)
            )
    for ref_name, left, right in table.lookups:
        ref_src = SOURCES[ref_name]
        ref_parts = extract.read(ref_name)
        if extract.count_lookups:
            files += _accounts(ref_parts, "lookup")
        if not ref_parts:
            notes.append(_missing_note(ref_src))
        rows, rejects = _lookup(rows, _stack(ref_parts, ref_src), ref_src, left, right)
        if extract.count_lookups:
            rejected += rejects
    if UNLINKED not in rows.columns:
        rows = rows.with_columns(pl.lit(None, pl.String).alias(UNLINKED))
    if VALUED not in rows.columns:
        rows = rows.with_columns(pl.lit(True).alias(VALUED))
    return Ingested(
        table=table,
        rows=rows,
        rejected=_rejected_frame(rejected, table),
        files=files,
        notes=notes,
        has_valuation=has_valuation,
    )


def _rejected_frame(parts: Sequence[pl.DataFrame], table: RawTable) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {FILE: pl.String(), LINE: pl.Int64(), RAW: pl.String(),
                                      REASON: pl.String(), DETAIL: pl.String()}
    schema |= {c: pl.String() for c in table.columns}
    frames = [p.select([pl.col(c).cast(t) if c in p.columns else pl.lit(None, t).alias(c)
                        for c, t in schema.items()]) for p in parts]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=schema)
