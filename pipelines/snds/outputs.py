"""Putting a table cleaned in partitions back together: its metrics and its sorted Parquet file."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq  # type: ignore[import-untyped]

ROW_GROUP_ROWS = 256_000
_BUCKET = "_bucket"
_SUMMED = ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped", "linked_rows_rejected", "cascade_rows")
_SUMMED_GROUPS = ("quarantine_reasons", "repairs", "cascade")
_FILE_COUNTS = ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped")


def _sum_dicts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0) + int(value)
    return dict(sorted(out.items()))


def merge_metrics(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One table's metrics from its partitions': counts summed, per-file counts summed, notes once each.

    Every count is a count of rows and each raw row lies in exactly one partition, so the sums
    are the whole table's counts; a file's format and role are the same in every partition.
    """
    out: dict[str, Any] = {key: sum(int(p[key]) for p in parts) for key in _SUMMED}
    for group in _SUMMED_GROUPS:
        out[group] = _sum_dicts(p[group] for p in parts)
    files: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, account in part["files"].items():
            if name not in files:
                files[name] = dict(account)
            else:
                for key in _FILE_COUNTS:
                    files[name][key] += account[key]
    out["files"] = dict(sorted(files.items()))
    out["notes"] = list(dict.fromkeys(note for p in parts for note in p["notes"]))
    return {key: out[key] for key in parts[0]} if parts else out


def _rows(files: list[Path]) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _bucket_bounds(files: list[Path], column: str, buckets: int) -> list[Any]:
    """Values of ``column`` cutting its sorted values into about equal buckets (from a 1-in-k sample)."""
    total = _rows(files)
    step = max(1, total // (200 * buckets))
    sample = pl.scan_parquet(files).select(pl.col(column).gather_every(step)).collect().get_column(column)
    ordered = sample.drop_nulls().sort()
    cuts = [ordered[int(i * ordered.len() / buckets)] for i in range(1, buckets)] if ordered.len() else []
    return sorted(set(cuts))


def _bucket_of(column: str, bounds: Sequence[Any]) -> pl.Expr:
    """0 for [.., b1) and nulls (a sort puts them first), i for [bi, bi+1), k for [bk, ..)."""
    value = pl.col(column)
    if not bounds:
        return pl.lit(0, pl.UInt32)
    above = [(value >= b).fill_null(False).cast(pl.UInt32) for b in bounds]
    return pl.sum_horizontal(above).cast(pl.UInt32)


def _route(files: list[Path], column: str, bounds: Sequence[Any], folder: Path) -> list[list[Path]]:
    """Each file's rows into their bucket's folder (one streaming pass); the files of each bucket."""
    pl.scan_parquet(files).with_columns(_bucket_of(column, bounds).alias(_BUCKET)).sink_parquet(
        pl.PartitionBy(folder, key=_BUCKET, include_key=False), compression="lz4", mkdir=True, engine="streaming")
    return [sorted((folder / f"{_BUCKET}={b}").glob("*.parquet")) for b in range(len(bounds) + 1)]


def write_sorted(files: list[Path], key: Sequence[str], target: Path, max_rows: int, work: Path) -> int:
    """The rows of ``files`` sorted by ``key`` into one Parquet file, about ``max_rows`` in memory at once.

    An external sort: one streaming pass routes the rows to buckets (under ``work``) of about
    ``max_rows`` by ranges of the key's first column (bounds from a sample); each bucket is sorted
    in memory and appended. Row groups of ``ROW_GROUP_ROWS`` rows are cut whatever the buckets, so
    the bytes depend only on the rows.
    """
    total = _rows(files)
    buckets = max(1, math.ceil(total / max_rows))
    bounds = _bucket_bounds(files, key[0], buckets) if buckets > 1 else []
    schema = pl.scan_parquet(files).collect_schema() if files else None
    writer: pq.ParquetWriter | None = None
    pending: list[pl.DataFrame] = []
    pending_rows = 0

    def flush(final: bool) -> None:
        nonlocal writer, pending, pending_rows
        frame = pl.concat(pending, how="vertical") if pending else pl.DataFrame(schema=schema)
        whole = frame.height if final else (frame.height // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
        table = frame.slice(0, whole).to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(target, table.schema, compression="zstd", compression_level=3)
        if whole:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        rest = frame.slice(whole)
        pending, pending_rows = ([rest] if rest.height else []), rest.height

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="buckets-", dir=work) as tmp:
        routed = _route(files, key[0], bounds, Path(tmp)) if bounds else [files]
        for bucket in routed:
            if not bucket:
                continue
            part = pl.read_parquet(bucket).sort(list(key))
            pending.append(part)
            pending_rows += part.height
            if pending_rows >= ROW_GROUP_ROWS:
                flush(final=False)
    flush(final=True)
    assert writer is not None
    writer.close()
    return total
