"""Small raw SNDS-shaped CSV fixtures for the clean stage tests.

Each table has one valid default row; a test passes rows as dicts holding only the
columns that differ from the default (or a plain string, written verbatim as a line).
Tables not passed get their single default row, so the five files always exist and
reference each other consistently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.clean import run_clean
from pipelines.config import CleanParams, Paths
from pipelines.contracts import RAW_SEPARATOR, RAW_TABLES

FINESS = "750000001"
PATIENT = "P0000000000000001"

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
        "IDE_ETA_NOM": "CHU Paris 1",
        "IDE_BDI_COD": "75013",
        "IDE_PSH_CAT": "101",
        "IDE_LIT_NBR": "900",
    },
    "stays": {
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
        "MNT_TOT_AM": "3500.50",
    },
    "diagnoses": {"ETA_NUM": FINESS, "RSA_NUM": "1", "DGN_ASS_NUM": "1", "ASS_DGN": "I10"},
    "dispensings": {
        "DCT_ORD_NUM": "D1",
        "BEN_NIR_PSA": PATIENT,
        "EXE_SOI_DTD": "15/01/2023",
        "PHA_PRS_C13": "3400930012345",
        "PHA_ATC_C07": "R03AL03",
        "PHA_ACT_QSN": "1",
        "BSE_REM_MNT": "38.50",
    },
}

Row = dict[str, str] | str


def render(table: str, rows: list[Row]) -> str:
    """The CSV text of a table: header, then each row (defaults + overrides) or raw line."""
    columns = RAW_TABLES[table].columns
    lines = [RAW_SEPARATOR.join(columns)]
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
        else:
            values = {**DEFAULTS[table], **row}
            lines.append(RAW_SEPARATOR.join(values[c] for c in columns))
    return "\n".join(lines) + "\n"


def write_raw(root: Path, **tables: list[Row]) -> Paths:
    """Write the five raw files under root/data/raw and return the project Paths."""
    paths = Paths(root)
    paths.raw.mkdir(parents=True, exist_ok=True)
    for name, spec in RAW_TABLES.items():
        rows = tables.get(name, [{}])
        (paths.raw / spec.file).write_text(render(name, rows), encoding="utf-8")
    return paths


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


def clean_rows(root: Path, params: CleanParams | None = None, **tables: list[Row]) -> Cleaned:
    """Write the fixtures and run the clean stage on them."""
    paths = write_raw(root, **tables)
    metrics = run_clean(paths, params or CleanParams())
    return Cleaned(metrics=metrics, paths=paths)
