"""Small raw SNDS extracts for the clean stage tests.

Each logical table (contracts.RAW_TABLES) has one valid default row; a test passes rows as
dicts holding only the columns that differ from the default (or a plain string, written
verbatim as a line of the table's driving file). Dict rows are cut into the SNDS files they
live in (T_MCO23B + T_MCO23C + T_MCO23VALO for a stay of 2023, ER_PHA_F + ER_PRS_F + IR_PHA_R
for a dispensing ...). Tables not passed get their single default row, so every file exists
and the files reference each other consistently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.clean import run_clean
from pipelines.config import CleanParams, Paths
from pipelines.contracts import PMSI_YEAR_COLUMN, RAW_SEPARATOR, RAW_TABLES, SOURCES

FINESS = "750000001"
PATIENT = "P0000000000000001"
YEAR = "2023"  # PMSI year of the default stay (files T_MCO23B/C/VALO/D)
DCIR = {"FLX_DIS_DTD": "01/02/2023", "FLX_EMT_NUM": "17", "FLX_EMT_ORD": "1", "FLX_EMT_TYP": "1",
        "FLX_TRT_DTD": "01/02/2023", "ORG_CLE_NUM": "01751000", "PRS_ORD_NUM": "1", "REM_TYP_AFF": "1"}

DEFAULTS: dict[str, dict[str, str]] = {
    "patients": {
        "BEN_NIR_PSA": PATIENT,
        "BEN_RNG_GEM": "1",
        "BEN_SEX_COD": "1",
        "BEN_NAI_ANN": "1950",
        "BEN_RES_DPT": "93",
        "BEN_RES_COM": "93066",
        "BEN_DCD_DTE": "",
    },
    "hospitals": {
        "IDE_ETA_NUM": FINESS,
        "IDE_ETA_NU8": FINESS[:8],
        "IDE_ETA_NOM": "CHU Paris 1",
        "IDE_BDI_COD": "75013",
        "IDE_PSH_CAT": "101",
        "nofinesset": FINESS,
        "categetab": "101",
        "lit_mco": "900",
    },
    "stays": {
        "PMSI_YEAR": YEAR,
        "ETA_NUM": FINESS,
        "RSA_NUM": "1",
        "NIR_ANO_17": PATIENT,
        "EXE_SOI_DTD": "03/01/2023",
        "EXE_SOI_DTF": "10/01/2023",
        "SEJ_NBJ": "7",
        "DGN_PAL": "J441",
        "DGN_REL": "",
        "ENT_MOD": "8",
        "ENT_PRV": "5",
        "SOR_MOD": "8",
        "SOR_DES": "",
        "GRG_GHM": "04M052",
        "AGE_ANN": "72",
        "COD_SEX": "1",
        "BDI_DEP": "93",
        "NIR_RET": "0", "NAI_RET": "0", "SEX_RET": "0", "SEJ_RET": "0", "FHO_RET": "0", "PMS_RET": "0",
        "DAT_RET": "0",
        "MNT_TOT_AM": "3500.50",
        "VALO": "1",
    },
    "diagnoses": {"PMSI_YEAR": YEAR, "ETA_NUM": FINESS, "RSA_NUM": "1", "DGN_ASS_NUM": "1", "ASS_DGN": "I10"},
    "dispensings": {
        "DCT_ORD_NUM": "1",
        **DCIR,
        "BEN_NIR_PSA": PATIENT,
        "BEN_RNG_GEM": "1",
        "EXE_SOI_DTD": "15/01/2023",
        "PHA_PRS_C13": "3400930012345",
        "PHA_ACT_QSN": "1",
        "PHA_CIP_C13": "3400930012345",
        "PHA_ATC_C07": "R03AL03",
        "BSE_REM_MNT": "38.50",
    },
}

Row = dict[str, str] | str


def _line(values: dict[str, str], columns: tuple[str, ...]) -> str:
    return RAW_SEPARATOR.join(values.get(c, "") for c in columns)


def render_files(table: str, rows: list[Row]) -> dict[str, list[str]]:
    """The lines (header first) of every SNDS file of a logical table.

    A dict row (defaults + overrides) is cut into its sources (T_MCOaaB/C/VALO of its PMSI
    year ...); a string row is written verbatim in the table's driving file (year 2023).
    """
    spec = RAW_TABLES[table]
    names = [spec.driving, *spec.links, *(s for s, _, _ in spec.lookups)]
    files: dict[str, list[str]] = {}

    def add(source: str, year: str, line: str) -> None:
        src = SOURCES[source]
        name = src.file_name(int(year)) if src.yearly else src.file_name()
        files.setdefault(name, [RAW_SEPARATOR.join(src.columns)]).append(line)

    for name in names:  # every file exists, header-only if no row reaches it
        src = SOURCES[name]
        files.setdefault(src.file_name(int(YEAR)) if src.yearly else src.file_name(), [RAW_SEPARATOR.join(src.columns)])
    seen_refs: set[str] = set()
    for row in rows:
        if isinstance(row, str):
            add(spec.driving, YEAR, row)
            continue
        values = {**DEFAULTS[table], **row}
        # a referential row follows the key it describes unless the test says otherwise
        if table == "hospitals" and "nofinesset" not in row:
            values["nofinesset"] = values["IDE_ETA_NUM"]
        if table == "dispensings" and "PHA_CIP_C13" not in row:
            values["PHA_CIP_C13"] = values["PHA_PRS_C13"]
        year = values.get(PMSI_YEAR_COLUMN, YEAR)
        for name in names:
            line = _line(values, SOURCES[name].columns)
            if name == "IR_PHA_R":  # a referential: one line per product
                if line in seen_refs:
                    continue
                seen_refs.add(line)
            add(name, year, line)
    return files


def render(table: str, rows: list[Row]) -> str:
    """The CSV text of a table's driving file (single-file view, kept for simple tests)."""
    spec = RAW_TABLES[table]
    src = SOURCES[spec.driving]
    lines = render_files(table, rows)[src.file_name(int(YEAR)) if src.yearly else src.file_name()]
    return "\n".join(lines) + "\n"


def write_raw(root: Path, **tables: list[Row]) -> Paths:
    """Write the SNDS files of the five tables under root/data/raw and return the project Paths."""
    paths = Paths(root)
    paths.raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_TABLES:
        for file_name, lines in render_files(name, tables.get(name, [{}])).items():
            (paths.raw / file_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def driving_file(table: str, year: str = YEAR) -> str:
    """File name of a table's driving source (T_MCO23B.csv for stays ...)."""
    src = SOURCES[RAW_TABLES[table].driving]
    return src.file_name(int(year)) if src.yearly else src.file_name()


@dataclass(frozen=True)
class Cleaned:
    """What a clean run produced, read back from disk."""

    metrics: dict[str, Any]
    paths: Paths

    def clean(self, table: str) -> pl.DataFrame:
        return pl.read_parquet(self.paths.clean / f"{table}.parquet")

    def quarantine(self, table: str) -> pl.DataFrame:
        return pl.read_parquet(self.paths.quarantine / f"{table}.parquet")

    def reasons(self, table: str) -> list[str]:
        return self.quarantine(table)["reason"].to_list()

    def table_metrics(self, table: str) -> dict[str, Any]:
        result: dict[str, Any] = self.metrics["tables"][table]
        return result


# Fixtures quarantine on purpose: no mass-loss ceiling unless a test sets one.
NO_CEILING = CleanParams(max_quarantine_share=1.0)


def clean_rows(root: Path, params: CleanParams | None = None, **tables: list[Row]) -> Cleaned:
    """Write the fixtures and run the clean stage on them."""
    paths = write_raw(root, **tables)
    metrics = run_clean(paths, params or NO_CEILING)
    return Cleaned(metrics=metrics, paths=paths)
