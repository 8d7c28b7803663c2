"""Cleaning a table in hash partitions (clean.partition_mb) gives what cleaning it whole gives.

The partitioned path must be invisible in the outputs: the same clean rows in the same order,
the same quarantined rows with the same reasons and details, the same metrics. Compared on
the shared dirty extract (every corruption kind, encloses_stay across hospitals included), on
random dirty tables, and on the cases partitioning could break (keys padded differently in
the linked file, exact duplicate lines, a partition with no row, quoted files read whole).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines import clean
from pipelines.config import CleanParams, Paths
from pipelines.contracts import RAW_TABLES
from pipelines.snds.outputs import ROW_GROUP_ROWS, merge_metrics, write_sorted
from tests.data.test_clean_accounting import dirty_table
from tests.support.raw_fixtures import NO_CEILING, write_raw

TABLES = tuple(RAW_TABLES)


@contextmanager
def partitions(parts: int) -> Iterator[list[tuple[str, int]]]:
    """Every partitionable table cleaned in ``parts`` partitions; yields the (table, parts) calls made."""
    calls: list[tuple[str, int]] = []
    real = clean.clean_in_parts

    def spy(extract: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        outcome = real(extract, name, *args, **kwargs)
        calls.append((name, args[1] if outcome is not None else 1))
        return outcome

    def count(extract: Any, name: str, partition_mb: int) -> int:
        return parts if name in clean.PARTITION_COLUMNS else 1

    with mock.patch.object(clean, "partition_count", count), mock.patch.object(clean, "clean_in_parts", spy):
        yield calls


def outputs(paths: Paths) -> dict[str, Any]:
    found: dict[str, Any] = {"metrics": json.loads((paths.metrics / "cleaning.json").read_text())}
    for name in TABLES:
        found[f"clean/{name}"] = pl.read_parquet(paths.clean / f"{name}.parquet")
        found[f"quarantine/{name}"] = pl.read_parquet(paths.quarantine / f"{name}.parquet")
    return found


def assert_same(whole: dict[str, Any], parted: dict[str, Any]) -> None:
    assert parted["metrics"] == whole["metrics"]
    for key in whole:
        if key != "metrics":
            assert parted[key].equals(whole[key]), key
            assert parted[key].schema == whole[key].schema, key


def copy_raw(raw: Path, root: Path) -> Paths:
    paths = Paths(root)
    shutil.copytree(raw, paths.raw)
    return paths


def test_the_dirty_extract_in_partitions_is_the_dirty_extract_whole(dirty_extract_root: Path, tmp_path: Path) -> None:
    whole = outputs(Paths(dirty_extract_root))
    paths = copy_raw(Paths(dirty_extract_root).raw, tmp_path)
    with partitions(5) as calls:
        clean.run_clean(paths, CleanParams(max_quarantine_share=1.0))
    assert sorted(calls) == [("diagnoses", 5), ("dispensings", 5), ("patients", 5), ("stays", 5)]
    assert_same(whole, outputs(paths))
    tables = whole["metrics"]["tables"]
    assert tables["stays"]["quarantine_reasons"]["unknown_finess"] > 0  # a cascade from hospitals
    assert tables["diagnoses"]["quarantine_reasons"]["unknown_stay"] > 0  # checked against every partition's stays
    assert tables["dispensings"]["duplicates_dropped"] > 0
    assert tables["stays"]["linked_rows_rejected"] > 0
    assert not (paths.data / "tmp" / "clean").exists()  # the spill is removed


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=st.fixed_dictionaries({name: dirty_table(name) for name in RAW_TABLES}), parts=st.integers(2, 4))
@example(tables={  # a duplicate line with an unparsable date: counted once by both readers ("1 of 1")
    "patients": [{"BEN_NIR_PSA": "P1", "BEN_DCD_DTE": "-1"}, {"BEN_NIR_PSA": "P1", "BEN_DCD_DTE": "-1"}],
    "hospitals": [{"IDE_ETA_NUM": "750000001", "IDE_BDI_COD": "75013"}],
    "stays": [{"ETA_NUM": "750000001", "RSA_NUM": "1"}],
    "diagnoses": [{"ETA_NUM": "750000001", "RSA_NUM": "1", "DGN_ASS_NUM": "1"}],
    "dispensings": [{"DCT_ORD_NUM": "1"}]}, parts=2)
def test_random_dirty_tables_clean_the_same_in_partitions(tables: dict[str, Any], parts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        whole_paths = write_raw(Path(tmp) / "whole", **tables)
        parted_paths = copy_raw(whole_paths.raw, Path(tmp) / "parted")
        errors = []
        for paths, parts_used in ((whole_paths, 1), (parted_paths, parts)):
            try:
                with partitions(parts_used):
                    clean.run_clean(paths, NO_CEILING)
            except clean.RawFileError as exc:  # structural (every date of a column junk): the same error
                errors.append(str(exc).replace(str(paths.root), "<root>"))
        assert len(errors) in (0, 2)
        assert len(set(errors)) <= 1
        if not errors:
            assert_same(outputs(whole_paths), outputs(parted_paths))


def _dispensings(n: int) -> list[dict[str, str]]:
    return [{"DCT_ORD_NUM": str(i), "BEN_NIR_PSA": "P0000000000000001"} for i in range(1, n + 1)]


def test_keys_padded_differently_in_the_linked_file_still_join(tmp_path: Path) -> None:
    """ER_PRS_F writes DCT_ORD_NUM as 0007 where ER_PHA_F writes 7: the same partition, so they join."""
    paths = write_raw(tmp_path / "whole", dispensings=_dispensings(30))
    prs = paths.raw / "ER_PRS_F.csv"
    lines = prs.read_text(encoding="utf-8").splitlines()
    prs.write_text("\n".join([lines[0], *(f"000{line}" for line in lines[1:])]) + "\n", encoding="utf-8")
    clean.run_clean(paths, NO_CEILING)
    parted = copy_raw(paths.raw, tmp_path / "parted")
    with partitions(7) as calls:
        clean.run_clean(parted, NO_CEILING)
    assert ("dispensings", 7) in calls
    found = outputs(parted)
    assert found["clean/dispensings"].height == 30  # all joined: no orphan, no unlinked row
    assert found["quarantine/dispensings"].height == 0
    assert_same(outputs(paths), found)


def test_a_stay_enclosing_one_in_another_partition_is_quarantined(tmp_path: Path) -> None:
    """encloses_stay compares one patient's stays across hospitals, so across partitions."""
    from pipelines.snds.spill import partition_of

    finess = ["750000001", "930000002"]
    parts = next(n for n in range(2, 20) if len(set(pl.select(
        partition_of([pl.lit(f), pl.lit("1")], n).alias(f) for f in finess).row(0))) == 2)  # in two partitions
    hospitals: list[Any] = [{"IDE_ETA_NUM": f, "nofinesset": f, "IDE_BDI_COD": p}
                            for f, p in zip(finess, ["75013", "93200"], strict=True)]
    stays: list[Any] = [
        {"ETA_NUM": "750000001", "RSA_NUM": "1", "EXE_SOI_DTD": "03/01/2023", "EXE_SOI_DTF": "30/01/2023",
         "SEJ_NBJ": "27"},
        {"ETA_NUM": "930000002", "RSA_NUM": "1", "EXE_SOI_DTD": "10/01/2023", "EXE_SOI_DTF": "12/01/2023",
         "SEJ_NBJ": "2"},
    ]
    paths = write_raw(tmp_path / "whole", hospitals=hospitals, stays=stays)
    clean.run_clean(paths, NO_CEILING)
    parted = copy_raw(paths.raw, tmp_path / "parted")
    with partitions(parts) as calls:
        clean.run_clean(parted, NO_CEILING)
    assert ("stays", parts) in calls
    found = outputs(parted)
    assert found["quarantine/stays"]["reason"].to_list() == ["encloses_stay"]
    assert found["clean/stays"]["hospital_id"].to_list() == ["930000002"]
    assert_same(outputs(paths), found)


def test_duplicates_blank_tail_and_empty_partitions(tmp_path: Path) -> None:
    """Exact duplicate lines fall in one partition; trailing blank lines are not rows; 9 partitions of 3 rows."""
    rows: list[Any] = [{"BEN_NIR_PSA": f"P{i}"} for i in range(3)]
    paths = write_raw(tmp_path / "whole", patients=rows)
    ben = paths.raw / "IR_BEN_R.csv"
    lines = ben.read_text(encoding="utf-8").splitlines()
    ben.write_text("\n".join([*lines, lines[1], lines[2], "", ""]) + "\n", encoding="utf-8")
    clean.run_clean(paths, NO_CEILING)
    parted = copy_raw(paths.raw, tmp_path / "parted")
    with partitions(9):
        clean.run_clean(parted, NO_CEILING)
    found = outputs(parted)
    patients = found["metrics"]["tables"]["patients"]
    assert (patients["raw_rows"], patients["duplicates_dropped"], patients["clean_rows"]) == (5, 2, 3)
    assert_same(outputs(paths), found)


def test_a_quoted_file_makes_its_table_read_whole(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, patients=[{"BEN_NIR_PSA": "P1"}, {"BEN_NIR_PSA": "P2", "BEN_RES_COM": '"93066"'}])
    with partitions(3) as calls:
        metrics = clean.run_clean(paths, NO_CEILING)
    assert ("patients", 1) in calls  # spilled, found quoted, cleaned whole
    assert metrics["tables"]["patients"]["files"]["IR_BEN_R.csv"]["format"]["quoted"] is True
    assert metrics["tables"]["patients"]["clean_rows"] == 2


def test_a_required_table_without_data_rows_is_named_in_partitions(tmp_path: Path) -> None:
    paths = write_raw(tmp_path)
    stays = paths.raw / "T_MCO23B.csv"
    stays.write_text(stays.read_text(encoding="utf-8").splitlines()[0] + "\n\n", encoding="utf-8")
    with partitions(3), pytest.raises(clean.RawFileError, match=r"T_MCO23B\.csv: header but no data row"):
        clean.run_clean(paths, NO_CEILING)


def test_a_date_format_the_sample_misleads_on_is_decided_on_every_partition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first values are ISO, most are dd/mm/yyyy: the file's format is the majority's, as read whole."""
    from pipelines.snds import spill

    monkeypatch.setattr(spill, "_DATE_SAMPLE", 2)
    deaths = ["2023-01-03", "2023-01-04", "05/01/2023", "06/01/2023", "07/01/2023"]
    rows: list[Any] = [{"BEN_NIR_PSA": f"P{i}", "BEN_DCD_DTE": d} for i, d in enumerate(deaths)]
    paths = write_raw(tmp_path / "whole", patients=rows)
    clean.run_clean(paths, NO_CEILING)
    parted = copy_raw(paths.raw, tmp_path / "parted")
    with partitions(3):
        metrics = clean.run_clean(parted, NO_CEILING)
    assert metrics["tables"]["patients"]["files"]["IR_BEN_R.csv"]["format"]["date_formats"] == {
        "BEN_DCD_DTE": "dd/mm/yyyy"}
    assert metrics["tables"]["patients"]["quarantine_reasons"]["invalid_date"] == 2
    assert_same(outputs(paths), outputs(parted))


def test_a_failed_partitioned_run_keeps_the_previous_outputs_and_no_spill(tmp_path: Path) -> None:
    paths = write_raw(tmp_path, dispensings=_dispensings(5))
    clean.run_clean(paths, NO_CEILING)
    before = {p: p.read_bytes() for p in clean.output_files(paths)}

    def boom(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with partitions(3), mock.patch.object(clean, "write_sorted", boom), pytest.raises(KeyboardInterrupt):
        clean.run_clean(paths, NO_CEILING)
    assert {p: p.read_bytes() for p in clean.output_files(paths)} == before
    assert not (paths.data / "tmp" / "clean").exists()
    assert not list(paths.clean.glob(".*.tmp*"))


# ---- the pieces: external sort and metrics merge --------------------------------------------------

def test_write_sorted_is_the_in_memory_sort_whatever_the_bucket_size(tmp_path: Path) -> None:
    n = ROW_GROUP_ROWS + 1234
    keys = pl.Series([None if i % 997 == 0 else f"k{(i * 7919) % 5000:05d}" for i in range(n)], dtype=pl.String)
    frame = pl.DataFrame({"k": keys, "rank": pl.int_range(n, eager=True) % 13, "v": pl.int_range(n, eager=True)})
    frame = frame.unique(["k", "rank"], keep="first", maintain_order=True)
    parts = []
    for i in range(3):
        part = tmp_path / f"p{i}.parquet"
        frame.filter(pl.col("v") % 3 == i).sort("k", "rank").write_parquet(part)
        parts.append(part)
    expected = frame.sort("k", "rank")
    written = {}
    for max_rows in (10_000_000, 50_000, 7_000):
        target = tmp_path / f"out{max_rows}.parquet"
        assert write_sorted(parts, ("k", "rank"), target, max_rows, tmp_path / "work") == frame.height
        assert pl.read_parquet(target).equals(expected)
        written[max_rows] = target.read_bytes()
    assert len(set(written.values())) == 1  # bytes depend on the rows only, not on the buckets
    assert not list((tmp_path / "work").iterdir())  # the buckets are removed


def test_merge_metrics_sums_counts_and_files() -> None:
    def part(raw: int, clean_rows: int, reason: int, note: str) -> dict[str, Any]:
        return {"raw_rows": raw, "clean_rows": clean_rows, "quarantined_rows": reason, "duplicates_dropped": 0,
                "linked_rows_rejected": 1, "cascade_rows": 0, "quarantine_reasons": {"x": reason, "y": 0},
                "repairs": {"r": 2}, "cascade": {}, "notes": [note],
                "files": {"F.csv": {"source": "S", "role": "driving", "year": None, "raw_rows": raw,
                                    "clean_rows": clean_rows, "quarantined_rows": reason, "duplicates_dropped": 0,
                                    "format": {"separator": ";"}}}}

    merged = merge_metrics([part(5, 4, 1, "a"), part(7, 5, 2, "a"), part(0, 0, 0, "b")])
    assert (merged["raw_rows"], merged["clean_rows"], merged["quarantined_rows"]) == (12, 9, 3)
    assert merged["quarantine_reasons"] == {"x": 3, "y": 0}
    assert merged["repairs"] == {"r": 6}
    assert merged["linked_rows_rejected"] == 3
    assert merged["notes"] == ["a", "b"]
    assert merged["files"]["F.csv"]["raw_rows"] == 12
    assert merged["files"]["F.csv"]["format"] == {"separator": ";"}
    assert list(merged) == list(part(0, 0, 0, ""))


def test_values_a_join_or_a_duplicate_key_equates_fall_in_one_partition() -> None:
    from pipelines.snds.spill import partition_of

    def parts_of(values: list[str | None]) -> set[int]:
        frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
        return set(frame.select(partition_of([pl.col("v")], 1_000_003)).to_series().to_list())

    assert len(parts_of(["42", "042", " 42 ", "+42", "+0042"])) == 1  # as the join and parse_int see them
    assert len(parts_of(["-042", "-42"])) == 1
    assert len(parts_of(["0750000001", "750000001"])) == 1
    assert len(parts_of(["00", "0", "000"])) == 1
    assert len(parts_of(["2A0001", "02A0001"])) == 1  # text: leading zeros dropped
    assert parts_of([None]) == {0}
    assert len(parts_of([str(i) for i in range(200)])) > 150  # spread, not one bucket
