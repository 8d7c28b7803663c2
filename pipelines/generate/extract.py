"""Turn simulated patients, stays and dispensings into SNDS-shaped text tables (all String)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.contracts import RAW_DATE_FORMAT, RAW_TABLES
from pipelines.generate import catalog
from pipelines.generate.population import COMORBIDITY_CODES, Hospitals, IntArray, Patients

# Chunk offsets keep RSA and claim numbers unique across chunks at any scale.
RSA_PER_CHUNK = 10_000_000
CLAIMS_PER_CHUNK = 100_000_000


@dataclass(frozen=True)
class ChunkTables:
    raw: dict[str, pl.DataFrame]  # table name -> String columns in RAW_TABLES order
    truth: pl.DataFrame  # contracts.TRUTH_STAY_COLUMNS


def _dates(days: pl.Expr, start: np.datetime64) -> pl.Expr:
    start_date = pl.lit(start.astype("datetime64[D]").item())
    return (start_date + pl.duration(days=days)).dt.strftime(RAW_DATE_FORMAT)


def _select_raw(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    cols = RAW_TABLES[table].columns
    return frame.select([pl.col(c).cast(pl.String).fill_null("") for c in cols])


def hospitals_table(hosp: Hospitals) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "IDE_ETA_NUM": hosp.finess, "IDE_ETA_NOM": hosp.name, "IDE_BDI_COD": hosp.postal_code,
            "IDE_PSH_CAT": hosp.category, "IDE_LIT_NBR": hosp.beds,
        }
    )
    return _select_raw("hospitals", frame.sort("IDE_ETA_NUM"))


def patients_table(pat: Patients, death_day: IntArray, start: np.datetime64) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "BEN_NIR_PSA": pat.patient_id, "BEN_RNG_GEM": np.ones(pat.patient_id.size, dtype=np.int64),
            "BEN_SEX_COD": pat.sex, "BEN_NAI_ANN": pat.birth_year, "BEN_RES_DPT": pat.department,
            "BEN_RES_COM": pat.commune, "death": death_day,
        }
    ).with_columns(
        BEN_DCD_DTE=pl.when(pl.col("death") >= 0).then(_dates(pl.col("death"), start)).otherwise(pl.lit(""))
    )
    return _select_raw("patients", frame)


def stays_tables(
    pat: Patients,
    hosp: Hospitals,
    unplanned: pl.DataFrame,
    sessions: pl.DataFrame,
    chunk: int,
    start: np.datetime64,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Stays (T_MCOaaB+C), associated diagnoses (T_MCOaaD) and the truth per stay."""
    chronic_code = dict(catalog.CHRONIC_COMORBIDITY.items())
    session_comorb = np.array(
        [1 << COMORBIDITY_CODES.index(chronic_code[c]) if c in chronic_code else 0 for c in pat.chronic],
        dtype=np.int64,
    )
    sess = sessions.with_columns(
        episode_seq=pl.lit(None, dtype=pl.Int64),
        stay_in_episode=pl.lit(0, dtype=pl.Int64),
        age=pl.lit(0, dtype=pl.Int64),
        condition=pl.lit("PLANNED_SESSION"),
        comorbidities=pl.Series(session_comorb[sessions["patient_idx"].to_numpy()]),
        probability=pl.lit(None, dtype=pl.Float64),
        readmitted=pl.lit(False),
        entry_mode=pl.lit("8"), entry_source=pl.lit(""), discharge_mode=pl.lit("8"),
        discharge_destination=pl.lit(""),
    )
    stays = (
        pl.concat([unplanned.with_columns(planned=pl.lit(False)), sess.with_columns(planned=pl.lit(True))],
                  how="diagonal_relaxed")
        .sort("patient_idx", "admission", "stay_in_episode", "icd10")
        .with_row_index("row")
    )
    p_idx = stays["patient_idx"].to_numpy()
    years = (start + stays["admission"].to_numpy()).astype("datetime64[Y]").astype(np.int64) + 1970
    finess = hosp.finess[stays["hospital_idx"].to_numpy()]
    stays = stays.with_columns(
        ETA_NUM=pl.Series(finess),
        RSA_NUM=pl.col("row").cast(pl.Int64) + chunk * RSA_PER_CHUNK + 1,
        NIR_ANO_17=pl.Series(pat.patient_id[p_idx]),
        EXE_SOI_DTD=_dates(pl.col("admission"), start),
        EXE_SOI_DTF=_dates(pl.col("discharge"), start),
        SEJ_NBJ=pl.col("discharge") - pl.col("admission"),
        DGN_PAL=pl.col("icd10"),
        DGN_REL=pl.when(pl.col("icd10") == "Z511").then(pl.lit("C349")).otherwise(pl.lit("")),
        ENT_MOD=pl.col("entry_mode"), ENT_PRV=pl.col("entry_source"),
        SOR_MOD=pl.col("discharge_mode"), SOR_DES=pl.col("discharge_destination"),
        GRG_GHM=pl.col("ghm"),
        AGE_ANN=pl.Series(years - pat.birth_year[p_idx]),
        COD_SEX=pl.Series(pat.sex[p_idx]),
        BDI_DEP=pl.Series(pat.department[p_idx]),
        MNT_TOT_AM=pl.col("cost").round(2).cast(pl.String),
    ).with_columns(stay_id=pl.concat_str(["ETA_NUM", pl.lit("-"), pl.col("RSA_NUM").cast(pl.String)]))
    first_of_episode = (
        stays.filter(pl.col("stay_in_episode") == 0, pl.col("episode_seq").is_not_null())
        .select("episode_seq", episode_id="stay_id")
    )
    truth = (
        stays.join(first_of_episode, on="episode_seq", how="left")
        .with_columns(episode_id=pl.coalesce("episode_id", "stay_id"))
        .select(
            "stay_id", "episode_id", true_probability="probability",
            readmitted_30d="readmitted", planned="planned",
        )
    )
    diagnoses = _diagnoses(stays, rng)
    return _select_raw("stays", stays), diagnoses, truth


def _diagnoses(stays: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    mask = stays["comorbidities"].to_numpy()
    rows_l, codes_l = [], []
    for j, code in enumerate(COMORBIDITY_CODES):
        rows = np.flatnonzero((mask >> j) & 1)
        rows_l.append(rows)
        codes_l.append(np.full(rows.size, code))
    n_noise = rng.poisson(0.8, stays.height)
    noise_rows = np.repeat(np.arange(stays.height), n_noise)
    rows_l.append(noise_rows)
    codes_l.append(np.array(catalog.NOISE_DIAGNOSES)[rng.integers(0, len(catalog.NOISE_DIAGNOSES), noise_rows.size)])
    frame = (
        pl.DataFrame({"row": np.concatenate(rows_l), "ASS_DGN": np.concatenate(codes_l).astype(str)})
        .unique(["row", "ASS_DGN"])
        .sort("row", "ASS_DGN")
        .with_columns(DGN_ASS_NUM=pl.int_range(1, pl.len() + 1).over("row"))
    )
    keys = stays.select(pl.col("row").cast(pl.Int64), "ETA_NUM", "RSA_NUM")
    frame = frame.with_columns(pl.col("row").cast(pl.Int64)).join(keys, on="row").sort("RSA_NUM", "DGN_ASS_NUM")
    return _select_raw("diagnoses", frame)


def dispensings_table(
    pat: Patients, dispensings: pl.DataFrame, chunk: int, start: np.datetime64
) -> pl.DataFrame:
    ids = pat.patient_id[dispensings["patient_idx"].to_numpy()]
    frame = dispensings.with_row_index("row").with_columns(
        DCT_ORD_NUM=pl.col("row").cast(pl.Int64) + chunk * CLAIMS_PER_CHUNK + 1,
        BEN_NIR_PSA=pl.Series(ids),
        EXE_SOI_DTD=_dates(pl.col("day"), start),
        PHA_PRS_C13=pl.col("cip13"), PHA_ATC_C07=pl.col("atc"), PHA_ACT_QSN=pl.col("boxes"),
        BSE_REM_MNT=pl.col("amount").cast(pl.String),
    )
    return _select_raw("dispensings", frame)
