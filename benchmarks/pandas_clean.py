"""Reference implementation of the clean stage's rules in idiomatic pandas (benchmark only).

Not part of the package: ``benchmarks/bench_clean.py`` runs it beside ``python -m pipelines clean``
on the same raw files, and ``tests/data/test_bench_pandas_reference.py`` checks that both give the
same clean tables, the same quarantined lines (file, line, reason) and the same accounting
(per table and per file) on a small generated extract.

Same rules as ``pipelines/clean.py`` and ``pipelines/snds``: files found by name, decoded
(UTF-8, else CP1252, else Latin-1), separator from the header, lines with the wrong field count
kept as ``malformed_line``, exact duplicate lines dropped, date format detected per file and
column, yearly tables stacked, linked tables joined one-to-one (orphans and duplicate keys
rejected), referentials looked up, then the quarantine checks in the same precedence order,
duplicate keys, enclosing stays, cascades and repairs.

Limits (the simulator never writes these; the package handles them): quoted fields
(RFC 4180 with separators or newlines inside quotes) are not supported, and quarantine
``detail`` messages are not built.

Usage: python benchmarks/pandas_clean.py RAW_DIR OUT_DIR [--start 2021-01-01 --end 2024-12-31]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.contracts import (
    CLEAN_SCHEMAS,
    DCIR_KEYS,
    EXIT_MODES,
    HOSPITAL_CATEGORIES,
    OTHER_CATEGORY,
    PMSI_RETURN_CODES,
    PMSI_YEAR_COLUMN,
    PROVENANCES,
    RAW_TABLES,
    SEX_CODE_MAP,
    SOURCES,
    UNKNOWN_CATEGORY,
    SourceTable,
)

ENCODINGS = ("utf-8", "cp1252", "latin-1")
SEPARATORS = (";", ",", "\t", "|")
DATE_FORMATS: dict[str, tuple[str, str]] = {  # label -> (strptime format, shape)
    "dd/mm/yyyy": ("%d/%m/%Y", r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$"),
    "ddmmyyyy": ("%d%m%Y", r"^[0-9]{8}$"),
    "iso": ("%Y-%m-%d", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    "iso_datetime": ("%Y-%m-%d %H:%M:%S", r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"),
    "iso_datetime_t": ("%Y-%m-%dT%H:%M:%S", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"),
    "sas_datetime": ("%d%b%Y:%H:%M:%S", r"^[0-9]{2}[A-Za-z]{3}[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}$"),
}
TABLE_ORDER = ("hospitals", "stays", "diagnoses", "patients", "dispensings")
VALID_DEPARTMENTS = {f"{d:02d}" for d in range(1, 96) if d != 20} | {"2A", "2B"} | {f"97{d}" for d in range(1, 7)}
ICD10 = r"^[A-Z][0-9]{2}[0-9A-Z+]{0,4}$"
INT_RANGES = {"Int8": (-(2**7), 2**7 - 1), "Int16": (-(2**15), 2**15 - 1), "Int32": (-(2**31), 2**31 - 1),
              "Int64": (-(2**63), 2**63 - 1)}
LAST_DAY = pd.Timestamp("2262-04-01")  # beyond every parsed date (datetime64[ns] upper range)


@dataclass
class Params:
    start: date = date(2021, 1, 1)
    end: date = date(2024, 12, 31)
    min_age: int = 0
    max_age: int = 115
    min_birth_year: int = 1900


# --------------------------------------------------------------------------- reading


@dataclass
class FileRows:
    name: str
    source: SourceTable
    year: int | None
    rows: pd.DataFrame  # _file, _line, _malformed, source columns, <date>__date
    raw_rows: int
    duplicates_dropped: int


def discover(folder: Path) -> dict[str, list[tuple[Path, int | None]]]:
    import re

    found: dict[str, list[tuple[Path, int | None]]] = {name: [] for name in SOURCES}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".csv", ".txt"):
            continue
        for src in SOURCES.values():
            m = re.fullmatch(src.pattern, path.stem, flags=re.IGNORECASE)
            if m:
                found[src.name].append((path, 2000 + int(m.group("yy")) if src.yearly else None))
                break
    for files in found.values():
        files.sort(key=lambda f: (f[1] or 0, f[0].name))
    return found


def decode(data: bytes) -> str:
    for enc in ENCODINGS:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def parse_dates(values: pd.Series, label: str) -> pd.Series:
    fmt, shape = DATE_FORMATS[label]
    v = values.str.strip()
    shaped = v.where(v.str.match(shape, na=False))
    return pd.to_datetime(shaped, format=fmt, errors="coerce").dt.normalize()


def detect_date_format(values: pd.Series) -> str:
    present = values.dropna().str.strip()
    present = present[present != ""]
    if present.empty:
        return "dd/mm/yyyy"
    counts = {label: int(parse_dates(present, label).notna().sum()) for label in DATE_FORMATS}
    best = max(DATE_FORMATS, key=lambda label: counts[label])
    if counts[best] < 0.5 * len(present):
        raise ValueError(f"dates of no known format ({best}: {counts[best]} of {len(present)})")
    return best


def read_file(path: Path, source: SourceTable, year: int | None) -> FileRows:
    text = decode(path.read_bytes())
    if "\r" in text:
        text = text.replace("\r\n", "\n") if "\n" in text else text.replace("\r", "\n")
    lines = pd.Series(text.removesuffix("\n").split("\n"), dtype=object)
    del text
    header_line = lines.iloc[0].removeprefix("\ufeff")
    sep = max(SEPARATORS, key=header_line.count)
    header = [h.strip().strip('"').strip() for h in header_line.split(sep)]
    body = lines.iloc[1:]
    nonblank = body.str.strip() != ""
    last = nonblank[nonblank].index.max() if nonblank.any() else 0
    body = body.loc[:last]  # trailing blank lines are not data
    frame = pd.DataFrame({"_line": body.index.to_numpy() + 1, "_raw": body.to_numpy()})
    raw_rows = len(frame)
    frame = frame[~frame["_raw"].duplicated()]
    malformed = frame["_raw"].str.count(sep) + 1 != len(header)
    good = frame.loc[~malformed, "_raw"]
    parsed = pd.read_csv(io.StringIO("\n".join(good)), sep=sep, header=None, names=header, dtype=str,
                         keep_default_na=False, quoting=3, engine="c") if len(good) else \
        pd.DataFrame(columns=header, dtype=object)
    parsed.index = good.index
    # A malformed line's fields as far as they go (the package splits them too): a quarantined
    # row's key still names the parent whose children become cascades.
    bad = frame.loc[malformed, "_raw"].str.split(sep, expand=True)
    bad = bad.reindex(columns=range(len(header))).set_axis(header, axis=1)
    parsed = pd.concat([parsed, bad]).sort_index()
    upper = {h.upper(): h for h in header}
    out = pd.DataFrame({"_file": path.name, "_line": frame["_line"], "_malformed": malformed,
                        "_raw": frame["_raw"].where(malformed)}, index=frame.index)
    for col in source.columns:
        out[col] = parsed[upper[col.upper()]] if col.upper() in upper else None
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    for col in source.dates:
        label = detect_date_format(out.loc[~malformed, col]) if col.upper() in upper else "dd/mm/yyyy"
        out[f"{col}__date"] = parse_dates(out[col].astype("string"), label)
    if source.yearly:
        out[PMSI_YEAR_COLUMN] = str(year)
    return FileRows(path.name, source, year, out.reset_index(drop=True), raw_rows, raw_rows - len(frame))


# --------------------------------------------------------------------------- joins


def stack(parts: Sequence[FileRows], source: SourceTable) -> pd.DataFrame:
    if parts:
        return pd.concat([p.rows for p in parts], ignore_index=True)
    cols = ["_file", "_line", "_malformed", "_raw", *source.columns, *(f"{d}__date" for d in source.dates)]
    if source.yearly:
        cols.append(PMSI_YEAR_COLUMN)
    return pd.DataFrame(columns=cols).astype({"_malformed": bool})


def key_frame(df: pd.DataFrame, cols: Sequence[str], dates: Sequence[str] = ()) -> pd.DataFrame:
    """Keys as both sides write them: trimmed, leading zeros dropped, dates as dates."""
    out = {}
    for i, c in enumerate(cols):
        trimmed = df[c].astype("string").str.strip()
        unpadded = trimmed.str.lstrip("0")
        value = unpadded.mask((unpadded == "") & (trimmed != ""), "0")
        if c in dates:
            value = df[f"{c}__date"].dt.strftime("%Y-%m-%d").astype("string").fillna(value)
        out[f"_k{i}"] = value
    return pd.DataFrame(out, index=df.index)


def dedupe_linked(rows: pd.DataFrame, key: Sequence[str], dates: Sequence[str] = ()
                  ) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    bad = rows[rows["_malformed"]].assign(reason="malformed_line")
    ok = rows[~rows["_malformed"]]
    ok = pd.concat([ok, key_frame(ok, key, dates)], axis=1)
    keys = [f"_k{i}" for i in range(len(key))]
    dup = ok.duplicated(keys)
    return ok[~dup], [bad, ok[dup].assign(reason="duplicate_key")]


def link(driving: pd.DataFrame, linked: pd.DataFrame, source: SourceTable, on: Sequence[str],
         driving_src: SourceTable) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    keys = [f"_k{i}" for i in range(len(on))]
    joinable, rejects = dedupe_linked(linked, on, source.dates)
    good = driving[~driving["_malformed"]]
    dkeys = key_frame(good, on, driving_src.dates)
    known = joinable[keys].merge(dkeys.drop_duplicates(), on=keys, how="left", indicator=True)["_merge"]
    rejects.append(joinable[(known == "left_only").to_numpy()].assign(reason="orphan_row"))
    own = [c for c in (*source.columns, *(f"{d}__date" for d in source.dates)) if c.removesuffix("__date") not in on]
    right = joinable[[*keys, *own, "_file", "_line"]].rename(
        columns={"_file": f"_file__{source.name}", "_line": f"_line__{source.name}"})
    left = pd.concat([good, dkeys], axis=1).drop(columns=[c for c in own if c in good.columns])
    joined = left.merge(right, on=keys, how="left").drop(columns=keys)
    joined.index = good.index
    rest = driving[driving["_malformed"]]
    out = pd.concat([joined, rest]).sort_index()
    return out, rejects


def lookup(driving: pd.DataFrame, ref: pd.DataFrame, source: SourceTable, left_cols: Sequence[str],
           right_cols: Sequence[str]) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    joinable, rejects = dedupe_linked(ref, right_cols)
    keys = [f"_k{i}" for i in range(len(right_cols))]
    own = [c for c in source.columns if c not in right_cols]
    lk = key_frame(driving, left_cols).fillna("\x00null")  # null keys match nothing
    left = pd.concat([driving.drop(columns=[c for c in own if c in driving.columns]), lk], axis=1)
    joined = left.merge(joinable[[*keys, *own]], on=keys, how="left").drop(columns=keys)
    joined.index = driving.index
    return joined, rejects


@dataclass
class Ingested:
    rows: pd.DataFrame
    rejected: pd.DataFrame
    files: list[dict[str, Any]] = field(default_factory=list)


def ingest(found: dict[str, list[tuple[Path, int | None]]], name: str) -> Ingested:
    table = RAW_TABLES[name]
    dsrc = SOURCES[table.driving]

    def read(src: str) -> list[FileRows]:
        return [read_file(p, SOURCES[src], y) for p, y in found[src]]

    def account(parts: list[FileRows], role: str) -> list[dict[str, Any]]:
        return [{"file": p.name, "role": role, "source": p.source.name, "raw_rows": p.raw_rows,
                 "duplicates_dropped": p.duplicates_dropped} for p in parts]

    parts = read(table.driving)
    files = account(parts, "driving")
    rows = stack(parts, dsrc)
    rows["_unlinked"] = None
    rows["_valued"] = True
    rejected: list[pd.DataFrame] = []
    for link_name in table.links:
        src = SOURCES[link_name]
        lparts = read(link_name)
        files += account(lparts, "link")
        on = [PMSI_YEAR_COLUMN, *src.key] if src.yearly else list(src.key)
        if link_name == "T_MCOaaVALO":
            rows["_valued"] = rows[PMSI_YEAR_COLUMN].isin([str(p.year) for p in lparts])
        rows, rej = link(rows, stack(lparts, src), src, on, dsrc)
        rejected += rej
        if not src.optional or link_name == "ER_PRS_F":
            missing = ~rows["_malformed"] & rows[f"_line__{link_name}"].isna()
            rows["_unlinked"] = rows["_unlinked"].mask(missing, link_name)
    for ref_name, left_cols, right_cols in table.lookups:
        rparts = read(ref_name)
        files += account(rparts, "lookup")
        rows, rej = lookup(rows, stack(rparts, SOURCES[ref_name]), SOURCES[ref_name], left_cols, right_cols)
        rejected += rej
    cols = ["_file", "_line", "reason"]
    rej_frame = pd.concat([r[cols] for r in rejected], ignore_index=True) if rejected else pd.DataFrame(columns=cols)
    return Ingested(rows.reset_index(drop=True), rej_frame, files)


# --------------------------------------------------------------------------- values


def text(s: pd.Series) -> pd.Series:
    v = s.astype("string").str.strip()
    return v.mask(v == "")


def parse_int(s: pd.Series, dtype: str) -> pd.Series:
    """Integers of the dtype's range (Python ints: no float rounding); NA when empty or not one."""
    v = text(s)
    matched = v[v.str.fullmatch(r"[+-]?[0-9]+").fillna(False)].astype(str).map(int)
    low, high = INT_RANGES[dtype]
    fits = matched[[low <= x <= high for x in matched]]
    out = pd.Series(pd.NA, index=s.index, dtype="Int64")
    out[fits.index] = fits.astype("int64")
    return out


def parse_decimal(s: pd.Series) -> pd.Series:
    v = text(s).str.replace(",", ".", regex=False)
    v = v.where(v.str.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)").fillna(False))
    return pd.to_numeric(v, errors="coerce").astype("Float64")


def normalize_department(s: pd.Series) -> pd.Series:
    v = s.astype("string").str.strip().str.upper()
    corsica = pd.Series(np.where(v.str.slice(2, 3).isin(["0", "1"]), "2A", "2B"), index=s.index, dtype="string")
    conds = [v.str.fullmatch(r"[0-9]{2}|2[AB]|97[0-9]"), v.str.fullmatch(r"0([0-9]{2}|2[AB])"),
             v.str.fullmatch(r"97[0-9]{3}"), v.str.fullmatch(r"20[0-9]{3}"), v.str.fullmatch(r"[0-9]{5}")]
    choices = [v, v.str.slice(1), v.str.slice(0, 3), corsica, v.str.slice(0, 2)]
    code = pd.Series(pd.NA, index=s.index, dtype="string")
    for cond, choice in reversed(list(zip(conds, choices, strict=True))):
        code = choice.where(cond.fillna(False), code)
    return code.where(code.isin(VALID_DEPARTMENTS))


def repair_icd10(s: pd.Series) -> pd.Series:
    return text(s).str.replace(r"[\s.]", "", regex=True).str.upper()


def changed(raw: pd.Series, clean: pd.Series) -> pd.Series:
    return (raw.astype("string") != clean.astype("string")).fillna(False).astype(int)


def stay_id(df: pd.DataFrame) -> pd.Series:
    hosp = text(df["ETA_NUM"])
    return hosp + "-" + df["pmsi_year"].astype("string") + "-" + df["rsa_num"].astype("string")


def days(a: pd.Series, b: pd.Series) -> pd.Series:
    return (b - a).dt.days.astype("Int64")


# --------------------------------------------------------------------------- rules

Checks = list[tuple[str, pd.Series]]  # (reason, failed) in precedence order


@dataclass
class Context:
    params: Params
    hospital_ids: set[str] = field(default_factory=set)
    stay_ids: set[str] = field(default_factory=set)
    q_hospital_ids: set[str] = field(default_factory=set)
    q_stay_ids: set[str] = field(default_factory=set)
    max_year: int | None = None


def missing(df: pd.DataFrame, cols: Sequence[str]) -> Checks:
    return [("missing_value", text(df[c]).isna()) for c in cols]


def invalid_number(df: pd.DataFrame, pairs: dict[str, str]) -> Checks:
    return [("invalid_number", text(df[raw]).notna() & df[p].isna()) for raw, p in pairs.items()]


def invalid_date(df: pd.DataFrame, pairs: dict[str, str]) -> Checks:
    return [("invalid_date", text(df[raw]).notna() & df[p].isna()) for raw, p in pairs.items()]


def ts(d: date) -> pd.Timestamp:
    return pd.Timestamp(d)


def hospitals(df: pd.DataFrame, ctx: Context) -> tuple[Checks, dict[str, pd.Series]]:
    df["hospital_id"] = text(df["IDE_ETA_NUM"])
    df["hospital_name"] = text(df["IDE_ETA_NOM"])
    df["postal_code"] = text(df["IDE_BDI_COD"])
    pc = text(df["IDE_BDI_COD"])
    df["department"] = normalize_department(pc).where(pc.str.fullmatch(r"[0-9]{5}").fillna(False))
    cat = text(df["categetab"])
    df["category_code"] = cat
    df["category"] = cat.map(lambda c: UNKNOWN_CATEGORY if c is pd.NA else HOSPITAL_CATEGORIES.get(c, OTHER_CATEGORY))
    df["beds"] = parse_int(df["lit_mco"], "Int32")
    checks = [*missing(df, ["IDE_ETA_NUM", "IDE_BDI_COD"]), *invalid_number(df, {"lit_mco": "beds"}),
              ("invalid_department", df["department"].isna()), ("negative_value", df["beds"] < 0),
              ("invalid_department", df["department"].str.slice(0, 2) != df["hospital_id"].str.slice(0, 2))]
    return checks, {}


def stays(df: pd.DataFrame, ctx: Context) -> tuple[Checks, dict[str, pd.Series]]:
    p = ctx.params
    df["pmsi_year"] = parse_int(df[PMSI_YEAR_COLUMN], "Int16")
    df["rsa_num"] = parse_int(df["RSA_NUM"], "Int64")
    df["stay_id"] = stay_id(df)
    df["hospital_id"] = text(df["ETA_NUM"])
    df["patient_id"] = text(df["NIR_ANO_17"])
    df["admission_date"] = df["EXE_SOI_DTD__date"]
    df["discharge_date"] = df["EXE_SOI_DTF__date"]
    span = days(df["admission_date"], df["discharge_date"])
    df["length_of_stay"] = parse_int(df["SEJ_NBJ"], "Int32").fillna(span.where(text(df["SEJ_NBJ"]).isna()))
    df["icd10_code"] = repair_icd10(df["DGN_PAL"])
    df["related_icd10_code"] = repair_icd10(df["DGN_REL"])
    for col, raw in (("entry_mode", "ENT_MOD"), ("entry_source", "ENT_PRV"), ("discharge_mode", "SOR_MOD"),
                     ("discharge_destination", "SOR_DES"), ("ghm_code", "GRG_GHM")):
        df[col] = text(df[raw])
    df["age"] = parse_int(df["AGE_ANN"], "Int16")
    df["sex"] = text(df["COD_SEX"]).map(SEX_CODE_MAP).astype("Int64")
    df["department"] = normalize_department(df["BDI_DEP"])
    df["stay_cost"] = parse_decimal(df["MNT_TOT_AM"])
    ret = [text(df[c]) for c in PMSI_RETURN_CODES]
    df["pmsi_return_codes_ok"] = np.logical_and.reduce([(r.isna() | (r == "0")).fillna(True).to_numpy() for r in ret])
    icd_bad = ~df["icd10_code"].str.match(ICD10)
    rel_bad = ~df["related_icd10_code"].str.match(ICD10)
    checks = [
        ("unlinked_row", df["_unlinked"].notna()),
        *missing(df, ["ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF", "DGN_PAL", "ENT_MOD",
                      "SOR_MOD", "GRG_GHM", "AGE_ANN", "COD_SEX", "BDI_DEP"]),
        *invalid_number(df, {"RSA_NUM": "rsa_num", "SEJ_NBJ": "length_of_stay", "AGE_ANN": "age",
                             "MNT_TOT_AM": "stay_cost"}),
        *invalid_date(df, {"EXE_SOI_DTD": "admission_date", "EXE_SOI_DTF": "discharge_date"}),
        ("invalid_sex", df["sex"].isna()),
        ("invalid_department", df["department"].isna()),
        ("invalid_icd10", icd_bad.fillna(True)),
        ("invalid_icd10", rel_bad.fillna(False)),
        ("invalid_code", df["entry_mode"].notna() & ~df["entry_mode"].isin(EXIT_MODES)),
        ("invalid_code", df["discharge_mode"].notna() & ~df["discharge_mode"].isin(EXIT_MODES)),
        ("invalid_code", df["entry_source"].notna() & ~df["entry_source"].isin(PROVENANCES)),
        ("invalid_code", df["discharge_destination"].notna() & ~df["discharge_destination"].isin(PROVENANCES)),
        ("missing_cost", df["_valued"].fillna(False).astype(bool) & text(df["MNT_TOT_AM"]).isna()),
        ("negative_cost", df["stay_cost"] < 0),
        ("discharge_before_admission", df["discharge_date"] < df["admission_date"]),
        ("negative_length_of_stay", df["length_of_stay"] < 0),
        ("length_of_stay_mismatch", df["length_of_stay"] != span),
        ("date_outside_extract", (df["admission_date"] > ts(p.end)) | (df["discharge_date"] < ts(p.start))),
        ("impossible_age", ~df["age"].between(p.min_age, p.max_age)),
        ("unknown_finess", ~df["hospital_id"].isin(ctx.hospital_ids)),
    ]
    cascade = {"unknown_finess": df["hospital_id"].isin(ctx.q_hospital_ids)}
    return checks, cascade


def diagnoses(df: pd.DataFrame, ctx: Context) -> tuple[Checks, dict[str, pd.Series]]:
    df["pmsi_year"] = parse_int(df[PMSI_YEAR_COLUMN], "Int16")
    df["rsa_num"] = parse_int(df["RSA_NUM"], "Int64")
    df["stay_id"] = stay_id(df)
    df["hospital_id"] = text(df["ETA_NUM"])
    df["diagnosis_rank"] = parse_int(df["DGN_ASS_NUM"], "Int16")
    df["icd10_code"] = repair_icd10(df["ASS_DGN"])
    checks = [*missing(df, ["ETA_NUM", "RSA_NUM", "DGN_ASS_NUM", "ASS_DGN"]),
              *invalid_number(df, {"RSA_NUM": "rsa_num", "DGN_ASS_NUM": "diagnosis_rank"}),
              ("invalid_icd10", (~df["icd10_code"].str.match(ICD10)).fillna(True)),
              ("unknown_stay", ~df["stay_id"].isin(ctx.stay_ids) & df["stay_id"].notna())]
    return checks, {"unknown_stay": df["stay_id"].isin(ctx.q_stay_ids)}


def patients(df: pd.DataFrame, ctx: Context) -> tuple[Checks, dict[str, pd.Series]]:
    p = ctx.params
    df["patient_id"] = text(df["BEN_NIR_PSA"])
    df["birth_rank"] = parse_int(df["BEN_RNG_GEM"], "Int16")
    df["sex"] = text(df["BEN_SEX_COD"]).map(SEX_CODE_MAP).astype("Int64")
    df["birth_year"] = parse_int(df["BEN_NAI_ANN"], "Int16")
    df["department"] = normalize_department(df["BEN_RES_DPT"])
    df["commune"] = text(df["BEN_RES_COM"])
    df["death_date"] = df["BEN_DCD_DTE__date"]
    too_old = df["birth_year"] < p.min_birth_year
    if ctx.max_year is not None:
        too_old = too_old | (df["birth_year"] > ctx.max_year)
    checks = [*missing(df, ["BEN_NIR_PSA", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_RES_DPT"]),
              *invalid_number(df, {"BEN_RNG_GEM": "birth_rank", "BEN_NAI_ANN": "birth_year"}),
              *invalid_date(df, {"BEN_DCD_DTE": "death_date"}),
              ("invalid_sex", df["sex"].isna()), ("invalid_department", df["department"].isna()),
              ("date_outside_extract", df["death_date"] > ts(p.end)),
              ("impossible_birth_year", too_old)]
    return checks, {}


def dispensings(df: pd.DataFrame, ctx: Context) -> tuple[Checks, dict[str, pd.Series]]:
    p = ctx.params
    parts = [df[k].astype("string").str.strip() for k in DCIR_KEYS]
    ident = parts[0]
    for part in parts[1:]:
        ident = ident + "|" + part
    df["dispensing_id"] = ident
    df["patient_id"] = text(df["BEN_NIR_PSA"])
    df["dispensing_date"] = df["EXE_SOI_DTD__date"]
    df["cip13"] = text(df["PHA_PRS_C13"])
    df["atc_code"] = text(df["PHA_ATC_C07"])
    df["boxes"] = parse_int(df["PHA_ACT_QSN"], "Int32")
    df["amount"] = parse_decimal(df["BSE_REM_MNT"])
    d = df["dispensing_date"]
    checks = [("unlinked_row", df["_unlinked"].notna()),
              *missing(df, ["DCT_ORD_NUM", "BEN_NIR_PSA", "EXE_SOI_DTD", "PHA_PRS_C13", "PHA_ACT_QSN",
                            "BSE_REM_MNT"]),
              *invalid_number(df, {"PHA_ACT_QSN": "boxes", "BSE_REM_MNT": "amount"}),
              *invalid_date(df, {"EXE_SOI_DTD": "dispensing_date"}),
              ("negative_value", df["amount"] < 0),
              ("date_outside_extract", (d > ts(p.end)) | (d < ts(p.start)))]
    return checks, {}


RULES: dict[str, Callable[[pd.DataFrame, Context], tuple[Checks, dict[str, pd.Series]]]] = {
    "hospitals": hospitals, "stays": stays, "diagnoses": diagnoses, "patients": patients,
    "dispensings": dispensings,
}
KEYS = {"hospitals": ["hospital_id"], "stays": ["hospital_id", "pmsi_year", "rsa_num"],
        "diagnoses": ["hospital_id", "pmsi_year", "rsa_num", "diagnosis_rank"], "patients": ["patient_id"],
        "dispensings": ["dispensing_id"]}
REPAIRS: dict[str, Callable[[pd.DataFrame], dict[str, pd.Series]]] = {
    "hospitals": lambda df: {},
    "stays": lambda df: {
        "department_format": changed(df["BDI_DEP"], df["department"]),
        "icd_format": changed(df["DGN_PAL"], df["icd10_code"]) + changed(df["DGN_REL"], df["related_icd10_code"]),
        "decimal_comma": df["MNT_TOT_AM"].astype("string").str.contains(",", regex=False).fillna(False).astype(int)},
    "diagnoses": lambda df: {"icd_format": changed(df["ASS_DGN"], df["icd10_code"])},
    "patients": lambda df: {"department_format": changed(df["BEN_RES_DPT"], df["department"])},
    "dispensings": lambda df: {
        "decimal_comma": df["BSE_REM_MNT"].astype("string").str.contains(",", regex=False).fillna(False).astype(int)},
}


def assign_reasons(df: pd.DataFrame, checks: Checks) -> pd.Series:
    order = ["malformed_line", "orphan_row", "unlinked_row", "missing_value", "invalid_number", "invalid_date",
             "invalid_sex", "invalid_department", "invalid_icd10", "invalid_code", "missing_cost", "negative_cost",
             "negative_value", "discharge_before_admission", "negative_length_of_stay", "length_of_stay_mismatch",
             "impossible_age", "impossible_birth_year", "unknown_finess", "unknown_stay", "date_outside_extract"]
    ordered = sorted([("malformed_line", df["_malformed"]), *checks], key=lambda c: order.index(c[0]))
    reason = pd.Series(None, index=df.index, dtype=object)
    for name, failed in reversed(ordered):  # the first failing check wins
        reason = reason.mask(pd.Series(failed, index=df.index).fillna(False).astype(bool), name)
    return reason


def flag_duplicates(df: pd.DataFrame, key: list[str]) -> None:
    ok = df["reason"].isna()
    first = df["_line"].where(ok).groupby([df[k] for k in key], dropna=False).transform("min")
    df.loc[ok & (df["_line"] > first).fillna(False), "reason"] = "duplicate_key"


def flag_enclosing(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values(["patient_id", "admission_date", "discharge_date", "stay_id", "_file", "_line"],
                        na_position="last", kind="stable")
    ok = df["reason"].isna()
    d = df["discharge_date"].where(ok, LAST_DAY).fillna(LAST_DAY)
    pid = df["patient_id"].fillna("\x00null")
    later = d[::-1].groupby(pid[::-1], sort=False).cummin()[::-1].groupby(pid, sort=False).shift(-1)
    df.loc[ok & (df["discharge_date"] > later).fillna(False), "reason"] = "encloses_stay"
    return df


def clean_table(name: str, ing: Ingested, ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    df = ing.rows
    checks, cascade = RULES[name](df, ctx)
    df["reason"] = assign_reasons(df, checks)
    flag_duplicates(df, KEYS[name])
    if name == "stays":
        df = flag_enclosing(df)
    ok = df["reason"].isna()
    q = df[~ok]
    schema = CLEAN_SCHEMAS[name]
    clean = df.loc[ok, list(schema)].sort_values(KEYS[name], kind="stable").reset_index(drop=True)
    quarantine = pd.concat([q[["_file", "_line", "reason"]], ing.rejected], ignore_index=True).rename(
        columns={"_file": "source_file", "_line": "line_number"}).sort_values(["source_file", "line_number"])
    reasons = q["reason"].value_counts().to_dict()
    cas = {r: int((q["reason"] == r).where(c.reindex(q.index).fillna(False).astype(bool), False).sum())
           for r, c in cascade.items()}
    repairs = {k: int(v[ok].sum()) for k, v in REPAIRS[name](df).items()}
    q_by_file = quarantine["source_file"].value_counts().to_dict()
    files: dict[str, Any] = {}
    for f in ing.files:
        fname = f["file"]
        if f["role"] == "driving":
            clean_n, quar = int((ok & (df["_file"] == fname)).sum()), int(q_by_file.get(fname, 0))
        elif f["role"] == "link":
            lines = df.loc[df[f"_file__{f['source']}"] == fname, f"_line__{f['source']}"]
            linked = lines.nunique()
            clean_n = lines[ok.reindex(lines.index)].nunique()
            quar = int(q_by_file.get(fname, 0)) + linked - clean_n
        else:
            quar = int(q_by_file.get(fname, 0))
            clean_n = f["raw_rows"] - f["duplicates_dropped"] - quar
        files[fname] = {"raw_rows": f["raw_rows"], "clean_rows": int(clean_n), "quarantined_rows": int(quar),
                        "duplicates_dropped": f["duplicates_dropped"]}
    driving = [f for f in ing.files if f["role"] == "driving"]
    metrics = {"raw_rows": sum(f["raw_rows"] for f in driving), "clean_rows": len(clean),
               "quarantined_rows": len(q), "duplicates_dropped": sum(f["duplicates_dropped"] for f in driving),
               "linked_rows_rejected": len(ing.rejected), "quarantine_reasons": dict(sorted(reasons.items())),
               "repairs": repairs, "cascade": cas, "files": dict(sorted(files.items()))}
    if name == "hospitals":
        ctx.hospital_ids = set(clean["hospital_id"].dropna())
        ctx.q_hospital_ids = set(q["hospital_id"].dropna())
    if name == "stays":
        ctx.stay_ids = set(clean["stay_id"].dropna())
        ctx.q_stay_ids = set(q["stay_id"].dropna())
        ctx.max_year = int(clean["admission_date"].dt.year.max()) if len(clean) else None
    return clean, quarantine, metrics


def to_output(clean: pd.DataFrame, name: str) -> pd.DataFrame:
    """Clean columns in the contract's types (dates as datetime64[ms], integers nullable)."""
    out = clean.copy()
    for col, dtype in CLEAN_SCHEMAS[name].items():
        kind = str(dtype)
        if kind.startswith("Int"):
            out[col] = out[col].astype(kind)
        elif kind == "Date":
            out[col] = out[col].dt.date
        elif kind == "Boolean":
            out[col] = out[col].astype("boolean")
        elif kind == "Float64":
            out[col] = out[col].astype("Float64")
        else:
            out[col] = out[col].astype("string")
    return out


def run(raw: Path, params: Params) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, Any]]:
    found = discover(raw)
    ctx = Context(params)
    cleans, quarantines, metrics = {}, {}, {}
    for name in TABLE_ORDER:
        clean, quarantine, m = clean_table(name, ingest(found, name), ctx)
        cleans[name], quarantines[name], metrics[name] = to_output(clean, name), quarantine, m
    return cleans, quarantines, metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2021, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2024, 12, 31))
    args = parser.parse_args(argv)
    cleans, quarantines, metrics = run(args.raw, Params(start=args.start, end=args.end))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in TABLE_ORDER:
        cleans[name].to_parquet(args.out / f"{name}.parquet", index=False)
        quarantines[name].to_parquet(args.out / f"{name}.quarantine.parquet", index=False)
    (args.out / "cleaning.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
