"""Property: whatever the dirt, every raw row is accounted for exactly once.

raw_rows == clean_rows + quarantined_rows + duplicates_dropped, for every table, and the
Parquet files hold exactly the rows the metrics say.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.clean import REASONS, RawFileError, run_clean
from pipelines.contracts import PMSI_YEAR_COLUMN, RAW_SEPARATOR, RAW_TABLES, SOURCES
from tests.support.raw_fixtures import DEFAULTS, NO_CEILING, Row, driving_file, write_raw

NASTY = [
    "",
    " ",
    "-1",
    "0",
    "abc",
    "32/13/2023",
    "01/01/2020",
    "1,5",
    "093",
    "93200",
    "j44.0 ",
    "150",
    "1850",
    "99999999999",
    "999999999",
    "2A",
    '"9;3"',  # an RFC 4180 quoted field holding the separator
    'CH "Les Lilas"',  # a bare quote inside an unquoted field is kept as text
    "01/01/2099",
]
# Small id pools so that rows share keys and diagnoses find (or miss) their stays.
ID_POOLS: dict[str, dict[str, list[str]]] = {
    "hospitals": {"IDE_ETA_NUM": ["750000001", "930000002", "940000003"]},
    "stays": {"ETA_NUM": ["750000001", "930000002"], "RSA_NUM": ["1", "2", "3", "4", "5", "6"]},
    "diagnoses": {"ETA_NUM": ["750000001", "930000002"], "RSA_NUM": ["1", "2", "3"], "DGN_ASS_NUM": ["1", "2"]},
    "patients": {"BEN_NIR_PSA": ["P1", "P2", "P3", "P4", "P5"]},
    "dispensings": {"DCT_ORD_NUM": ["1", "2", "3", "4", "5"]},
}
HOSPITAL_POSTAL = {"750000001": "75013", "930000002": "93200", "940000003": "94010"}


@st.composite
def dirty_row(draw: st.DrawFn, table: str, previous: list[Row]) -> Row:
    row = {c: draw(st.sampled_from(pool)) for c, pool in ID_POOLS[table].items()}
    if table == "hospitals":
        row["IDE_BDI_COD"] = HOSPITAL_POSTAL[row["IDE_ETA_NUM"]]
    kind = draw(st.sampled_from(["clean", "clean", "value", "value", "malformed", "duplicate", "blank"]))
    if kind == "value":
        # any column but the PMSI year, which names the file rather than sits in it
        column = draw(st.sampled_from([c for c in RAW_TABLES[table].columns if c != PMSI_YEAR_COLUMN]))
        row[column] = draw(st.sampled_from(NASTY))
    elif kind == "malformed":
        values = [{**DEFAULTS[table], **row}[c] for c in SOURCES[RAW_TABLES[table].driving].columns]
        cut = draw(st.integers(0, len(values) - 2))
        return RAW_SEPARATOR.join(values[:cut] if draw(st.booleans()) else [*values, *values[:cut]])
    elif kind == "duplicate" and previous:
        return draw(st.sampled_from(previous))
    elif kind == "blank":
        return ""
    return row


@st.composite
def dirty_table(draw: st.DrawFn, table: str) -> list[Row]:
    rows: list[Row] = []
    for _ in range(draw(st.integers(1, 12))):
        rows.append(draw(dirty_row(table, rows)))
    if all(row == "" for row in rows):  # a table without any data row is a structural error
        rows.insert(0, {})
    return rows


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=st.fixed_dictionaries({name: dirty_table(name) for name in RAW_TABLES}))
def test_every_raw_row_is_accounted_for(tables: dict[str, list[Row]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_raw(Path(tmp), **tables)
        try:
            metrics = run_clean(paths, NO_CEILING)
        except RawFileError as exc:  # every date of a column junk: structural by design, nothing written
            message = str(exc)
            assert "parse in no known format" in message
            assert "\n" not in message
            assert not (paths.metrics / "cleaning.json").exists()
            return
        for name, rows in tables.items():
            m = metrics["tables"][name]
            written = len(rows)
            while written and rows[written - 1] == "":  # trailing blank lines are not rows
                written -= 1
            assert m["raw_rows"] == written, name
            assert m["raw_rows"] == m["clean_rows"] + m["quarantined_rows"] + m["duplicates_dropped"], name
            assert sum(m["quarantine_reasons"].values()) == m["quarantined_rows"], name
            assert set(m["quarantine_reasons"]) <= set(REASONS), name
            for file_name, f in m["files"].items():  # every SNDS file of the table, linked ones included
                lines = (paths.raw / file_name).read_text(encoding="utf-8").rstrip("\n").split("\n")[1:]
                while lines and lines[-1] == "":
                    lines.pop()
                assert f["raw_rows"] == len(lines), file_name
                assert f["raw_rows"] == f["clean_rows"] + f["quarantined_rows"] + f["duplicates_dropped"], file_name
            for reason, caused in m["cascade"].items():  # cascades are a part of their reason's count
                assert 0 <= caused <= m["quarantine_reasons"][reason], name
            assert m["cascade_rows"] == sum(m["cascade"].values()), name
            clean = pl.read_parquet(paths.clean / f"{name}.parquet")
            quarantine = pl.read_parquet(paths.quarantine / f"{name}.parquet")
            driving = quarantine.filter(pl.col("source_file") == driving_file(name))
            assert clean.height == m["clean_rows"], name
            assert driving.height == m["quarantined_rows"], name
            assert quarantine.height == m["quarantined_rows"] + m["linked_rows_rejected"], name
            assert not quarantine.select("source_file", "line_number").is_duplicated().any(), name
            assert quarantine["reason"].null_count() == 0, name
            assert quarantine["detail"].null_count() == 0, name
            key = clean.columns[:1] if name != "diagnoses" else ["stay_id", "diagnosis_rank"]
            assert not clean.select(key).is_duplicated().any(), name
