"""Inject the dirt real SNDS extracts carry, and log every corruption in the truth.

Repairable dirt (formats) may stack on a row; at most one unrepairable corruption hits a
row, so each quarantined row has exactly one planted reason.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.config import DirtRates
from pipelines.contracts import RAW_SEPARATOR, RAW_TABLES, SOURCES

# Repairable kinds: (table, column) pairs they hit.
_REPAIRABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "department_format": (("patients", "BEN_RES_DPT"), ("stays", "BDI_DEP")),
    "icd_format": (("stays", "DGN_PAL"), ("diagnoses", "ASS_DGN")),
    "decimal_comma": (("stays", "MNT_TOT_AM"), ("dispensings", "BSE_REM_MNT")),
}
# Unrepairable kinds by table, in the order their probability intervals are laid out.
_FATAL: dict[str, tuple[str, ...]] = {
    "patients": ("impossible_birth_year", "malformed_line"),
    "hospitals": ("malformed_line",),
    "stays": (
        "discharge_before_admission", "missing_cost", "negative_cost", "unknown_finess",
        "impossible_age", "malformed_line",
    ),
    "diagnoses": ("malformed_line",),
    "dispensings": ("malformed_line",),
}
_FATAL_COLUMN = {
    "discharge_before_admission": "EXE_SOI_DTF",
    "missing_cost": "MNT_TOT_AM",
    "negative_cost": "MNT_TOT_AM",
    "unknown_finess": "ETA_NUM",
    "impossible_age": "AGE_ANN",
    "impossible_birth_year": "BEN_NAI_ANN",
    "malformed_line": "",
}


def _department_variant(dept: str, u: float) -> str:
    if u < 0.5:
        return f"0{dept}"
    return f"{dept}{int(u * 1000) % 20 + 1:03d}" if dept == "75" else f"{dept}{int(u * 1000) % 9 * 10 + 100:03d}"


def _icd_variant(code: str, u: float) -> str:
    dotted = f"{code[:3]}.{code[3:]}" if len(code) > 3 else code
    variants = (dotted.lower(), f" {code.lower()}", f"{dotted} ", f"{code[:3]}.{code[3:].lower()}  ")
    return variants[int(u * len(variants)) % len(variants)]


def _repair_dirty(kind: str, value: str, u: float) -> str:
    if kind == "department_format":
        return _department_variant(value, u)
    if kind == "icd_format":
        return _icd_variant(value, u)
    return value.replace(".", ",") if "." in value else f"{value},0"


def _fatal_dirty(kind: str, row: dict[str, str], u: float) -> dict[str, str]:
    out = dict(row)
    if kind == "discharge_before_admission":
        out["EXE_SOI_DTD"], out["EXE_SOI_DTF"] = row["EXE_SOI_DTF"], row["EXE_SOI_DTD"]
    elif kind == "missing_cost":
        out["MNT_TOT_AM"] = ""
    elif kind == "negative_cost":
        out["MNT_TOT_AM"] = f"-{row['MNT_TOT_AM']}"
    elif kind == "unknown_finess":
        out["ETA_NUM"] = f"99{int(u * 1e7):07d}"
    elif kind == "impossible_age":
        out["AGE_ANN"] = "-1" if u < 0.3 else str(130 + int(u * 60))
    elif kind == "impossible_birth_year":
        out["BEN_NAI_ANN"] = "1850" if u < 0.5 else "2090"
    elif kind == "malformed_line":
        last = RAW_TABLES_LAST[row["__table"]]
        out[last] = f"{row[last]}{RAW_SEPARATOR}?"
    return out


# A malformed line grows the last field of the table's driving file (T_MCOaaB for stays ...).
RAW_TABLES_LAST = {name: SOURCES[t.driving].columns[-1] for name, t in RAW_TABLES.items()}


def _key(table: str, row: dict[str, str]) -> str:
    return "|".join(row[c] for c in RAW_TABLES[table].key)


def _written_columns(table: str) -> list[str]:
    """The columns dirt may rewrite in this table, plus its key (read for the log), in file order.

    Only these go through Python lists; the other columns stay Polars series untouched.
    """
    spec = RAW_TABLES[table]
    wanted = set(spec.key) | {RAW_TABLES_LAST[table]}  # malformed lines grow the last field
    wanted |= {column for targets in _REPAIRABLE.values() for t, column in targets if t == table}
    wanted |= {_FATAL_COLUMN[kind] for kind in _FATAL[table]} - {""}
    if "discharge_before_admission" in _FATAL[table]:
        wanted.add("EXE_SOI_DTD")  # swapped with EXE_SOI_DTF
    return [c for c in spec.columns if c in wanted]


def corrupt(
    table: str, frame: pl.DataFrame, rates: DirtRates, rng: np.random.Generator
) -> tuple[pl.DataFrame, list[dict[str, str]]]:
    """Return the dirty table and the corruption log rows (contracts.TRUTH_CORRUPTION_COLUMNS)."""
    n = frame.height
    cols = {c: frame[c].to_list() for c in _written_columns(table)}
    log: list[dict[str, str]] = []
    # Repairable formats, independent per kind.
    for kind, targets in _REPAIRABLE.items():
        rate = getattr(rates, kind)
        for target_table, column in targets:
            if target_table != table or rate <= 0:
                continue
            values = cols[column]
            hit = np.flatnonzero(rng.random(n) < rate)
            u = rng.random(hit.size)
            for i, ui in zip(hit.tolist(), u.tolist(), strict=True):
                if not values[i]:
                    continue
                original = values[i]
                values[i] = _repair_dirty(kind, original, ui)
                log.append({"kind": kind, "column": column, "raw_value": values[i],
                            "original_value": original, "__row": str(i)})
    # One unrepairable corruption at most per row.
    kinds = _FATAL[table]
    edges = np.cumsum([getattr(rates, k) for k in kinds])
    draw = rng.random(n)
    u = rng.random(n)
    for i in np.flatnonzero(draw < edges[-1]).tolist():
        kind = kinds[int(np.searchsorted(edges, draw[i], side="right"))]
        row = {c: cols[c][i] for c in cols} | {"__table": table}
        if kind == "discharge_before_admission" and row["EXE_SOI_DTD"] == row["EXE_SOI_DTF"]:
            continue  # a same-day stay cannot be reversed
        if kind in ("negative_cost",) and not row["MNT_TOT_AM"]:
            continue
        dirty = _fatal_dirty(kind, row, float(u[i]))
        for c in cols:
            cols[c][i] = dirty[c]
        column = _FATAL_COLUMN[kind]
        log.append({"kind": kind, "column": column, "raw_value": dirty[column] if column else "",
                    "original_value": row[column] if column else "", "__row": str(i)})
    # Exact duplicates of some well-formed rows.
    malformed = {int(e["__row"]) for e in log if e["kind"] == "malformed_line"}
    dup = [i for i in np.flatnonzero(rng.random(n) < rates.duplicate_row).tolist() if i not in malformed]
    dirty_frame = frame.with_columns([pl.Series(c, values, dtype=pl.String) for c, values in cols.items()])
    if dup:
        dirty_frame = (
            dirty_frame.with_row_index("__i")
            .pipe(lambda f: pl.concat([f, f[dup]]))
            .sort("__i", maintain_order=True)
            .drop("__i")
        )
    for i in dup:
        log.append({"kind": "duplicate_row", "column": "", "raw_value": "", "original_value": "",
                    "__row": str(i)})
    keyed = []
    for entry in log:
        i = int(entry.pop("__row"))
        row = {c: cols[c][i] for c in cols}
        keyed.append({"table": table, "row_key": _key(table, row), **entry})
    return dirty_frame, keyed
