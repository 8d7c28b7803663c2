"""Turn simulated patients, stays and dispensings into SNDS-shaped text tables (all String).

Each function returns a *logical* table (contracts.RAW_TABLES: the SNDS sources already
joined), so that dirt hits a stay in every file it lives in alike; `split_sources` then cuts
it into the SNDS tables the extract really holds (T_MCOaaB / C / VALO per PMSI year,
ER_PRS_F + ER_PHA_F, BE_IDE_R + the external FINESS/SAE file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.contracts import DCIR_KEYS, PMSI_YEAR_COLUMN, RAW_DATE_FORMAT, RAW_TABLES, SOURCES, stay_id_expr
from pipelines.generate import catalog
from pipelines.generate.population import COMORBIDITY_CODES, Hospitals, IntArray, Patients

# Chunk offsets keep claim numbers unique across chunks at any scale.
CLAIMS_PER_CHUNK = 100_000_000
SAS_DATETIME_FORMAT = "%d%b%Y:%H:%M:%S"  # T_MCOaaC dates, as the schema types them (06DEC2023:00:00:00)
# The fixed DCIR keys of a pharmacy claim besides DCT_ORD_NUM and the flow dates.
_DCIR_CONSTANTS = {"FLX_EMT_NUM": "17", "FLX_EMT_ORD": "1", "FLX_EMT_TYP": "1", "ORG_CLE_NUM": "01751000",
                   "PRS_ORD_NUM": "1", "REM_TYP_AFF": "1"}


@dataclass(frozen=True)
class ChunkTables:
    raw: dict[str, pl.DataFrame]  # table name -> String columns in RAW_TABLES order
    truth: pl.DataFrame  # contracts.TRUTH_STAY_COLUMNS


def _day(days: pl.Expr, start: np.datetime64) -> pl.Expr:
    return pl.lit(start.astype("datetime64[D]").item()) + pl.duration(days=days)


def _dates(days: pl.Expr, start: np.datetime64, fmt: str = RAW_DATE_FORMAT) -> pl.Expr:
    value = _day(days, start)
    if "%H" in fmt:
        return value.cast(pl.Datetime("us")).dt.strftime(fmt).str.to_uppercase()
    return value.dt.strftime(fmt)


def _select_raw(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    cols = RAW_TABLES[table].columns
    return frame.select([pl.col(c).cast(pl.String).fill_null("") for c in cols])


def hospitals_table(hosp: Hospitals) -> pl.DataFrame:
    """BE_IDE_R columns plus the external FINESS category and SAE beds (not SNDS)."""
    frame = pl.DataFrame(
        {
            "IDE_ETA_NUM": hosp.finess, "IDE_ETA_NU8": np.char.ljust(hosp.finess, 8).astype(str),
            "IDE_ETA_NOM": hosp.name, "IDE_BDI_COD": hosp.postal_code, "IDE_PSH_CAT": hosp.category,
            "nofinesset": hosp.finess, "categetab": hosp.category, "lit_mco": hosp.beds,
        }
    ).with_columns(pl.col("IDE_ETA_NU8").str.slice(0, 8))
    return _select_raw("hospitals", frame.sort("IDE_ETA_NUM"))


# One beneficiary in this many has sex code 0 in IR_BEN_R (DCIR "unknown"); their stays keep 1/2.
SEX_UNKNOWN_EVERY = 400


def patients_table(pat: Patients, death_day: IntArray, start: np.datetime64) -> pl.DataFrame:
    ids = np.array([int(p, 16) for p in pat.patient_id], dtype=object)
    sex = np.where(ids % SEX_UNKNOWN_EVERY == 0, 0, pat.sex)
    frame = pl.DataFrame(
        {
            "BEN_NIR_PSA": pat.patient_id, "BEN_RNG_GEM": np.ones(pat.patient_id.size, dtype=np.int64),
            "BEN_SEX_COD": sex, "BEN_NAI_ANN": pat.birth_year, "BEN_RES_DPT": pat.department,
            "BEN_RES_COM": pat.commune, "death": death_day,
        }
    ).with_columns(
        BEN_DCD_DTE=pl.when(pl.col("death") >= 0).then(_dates(pl.col("death"), start)).otherwise(pl.lit(""))
    )
    return _select_raw("patients", frame)


def _rsa_numbers(stays: pl.DataFrame, rsa_next: dict[tuple[str, str], int]) -> pl.Series:
    """RSA_NUM per (hospital, PMSI year), continuing across chunks: it restarts every year."""
    groups = ["ETA_NUM", PMSI_YEAR_COLUMN]
    offsets = pl.DataFrame(
        {"ETA_NUM": [k[0] for k in rsa_next], PMSI_YEAR_COLUMN: [k[1] for k in rsa_next],
         "_offset": list(rsa_next.values())},
        schema={"ETA_NUM": pl.String, PMSI_YEAR_COLUMN: pl.String, "_offset": pl.Int64},
    )
    numbered = (
        stays.select(groups)
        .with_columns(_rank=pl.int_range(pl.len(), dtype=pl.Int64).over(groups))
        .join(offsets, on=groups, how="left", maintain_order="left")
        .with_columns(_rsa=pl.col("_rank") + pl.col("_offset").fill_null(0) + 1)
    )
    for eta, year, count in numbered.group_by(groups).agg(pl.col("_rsa").max()).iter_rows():
        rsa_next[(eta, year)] = int(count)
    return numbered["_rsa"]


def stays_tables(
    pat: Patients,
    hosp: Hospitals,
    unplanned: pl.DataFrame,
    sessions: pl.DataFrame,
    rsa_next: dict[tuple[str, str], int],
    start: np.datetime64,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Stays (T_MCOaaB ⋈ C ⋈ VALO), associated diagnoses (T_MCOaaD) and the truth per stay."""
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
        kind=pl.lit("planned_session"),
        against_medical_advice=pl.lit(False),
        # A session has no provenance: PMSI writes 0 ("sans objet", MS_PRV_V).
        entry_mode=pl.lit("8"), entry_source=pl.lit("0"), discharge_mode=pl.lit("8"),
        discharge_destination=pl.lit(""),
    )
    stays = (
        pl.concat([unplanned, sess], how="diagonal_relaxed")
        .with_columns(planned=pl.col("kind").is_in(["planned_session", "planned_procedure"]))
        .sort("patient_idx", "admission", "stay_in_episode", "icd10")
        .with_row_index("row")
    )
    p_idx = stays["patient_idx"].to_numpy()
    years = (start + stays["admission"].to_numpy()).astype("datetime64[Y]").astype(np.int64) + 1970
    finess = hosp.finess[stays["hospital_idx"].to_numpy()]
    stays = stays.with_columns(
        ETA_NUM=pl.Series(finess),
        # The PMSI year of a stay is its discharge year (one T_MCOaaB table per year).
        PMSI_YEAR=_day(pl.col("discharge"), start).dt.year().cast(pl.String),
    )
    stays = stays.with_columns(RSA_NUM=_rsa_numbers(stays, rsa_next))
    stays = stays.with_columns(
        NIR_ANO_17=pl.Series(pat.patient_id[p_idx]),
        EXE_SOI_DTD=_dates(pl.col("admission"), start, SAS_DATETIME_FORMAT),
        EXE_SOI_DTF=_dates(pl.col("discharge"), start, SAS_DATETIME_FORMAT),
        # Empty for sessions, as the schema says (SEJ_NBJ: "vide si séance").
        SEJ_NBJ=pl.when(pl.col("kind") == "planned_session").then(pl.lit(None))
        .otherwise(pl.col("discharge") - pl.col("admission")),
        DGN_PAL=pl.col("icd10"),
        DGN_REL=pl.when(pl.col("icd10") == "Z511").then(pl.lit("C349")).otherwise(pl.lit("")),
        ENT_MOD=pl.col("entry_mode"), ENT_PRV=pl.col("entry_source"),
        SOR_MOD=pl.col("discharge_mode"), SOR_DES=pl.col("discharge_destination"),
        GRG_GHM=pl.col("ghm"),
        AGE_ANN=pl.Series(years - pat.birth_year[p_idx]),
        COD_SEX=pl.Series(pat.sex[p_idx]),
        BDI_DEP=pl.Series(pat.department[p_idx]),
        **dict.fromkeys(("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"), pl.lit("0")),
        MNT_TOT_AM=pl.col("cost").round(2).cast(pl.String),
        VALO=pl.lit("1"),
    ).with_columns(
        stay_id=stay_id_expr(pl.col("ETA_NUM"), pl.col(PMSI_YEAR_COLUMN), pl.col("RSA_NUM")),
        RSA_NUM=pl.col("RSA_NUM").cast(pl.String).str.zfill(10),  # written as a 10-character index
    )
    first_of_episode = (
        stays.filter(pl.col("stay_in_episode") == 0, pl.col("episode_seq").is_not_null())
        .select("episode_seq", episode_id="stay_id")
    )
    truth = (
        stays.join(first_of_episode, on="episode_seq", how="left")
        .with_columns(episode_id=pl.coalesce("episode_id", "stay_id"))
        .select(
            "stay_id", "episode_id", stay_kind="kind", true_probability="probability",
            readmission_probability="readmission_probability", readmitted_30d="readmitted",
            return_reason=pl.when(pl.col("return_reason") != "").then(pl.col("return_reason")),
            return_days=pl.when(pl.col("return_days") >= 0).then(pl.col("return_days")),
            planned_return_days="planned_return_days",
            against_medical_advice=pl.col("against_medical_advice").fill_null(False),
            planned="planned",
        )
    )
    diagnoses = _diagnoses(stays, rng)
    return _select_raw("stays", stays), diagnoses, truth


def pmsi_rejected_stays(
    stays: pl.DataFrame, rate: float, rsa_next: dict[tuple[str, str], int], rng: np.random.Generator
) -> pl.DataFrame:
    """Extra RSAs the standard PMSI filters drop: error GHMs (CMD 90) and failed chaining controls.

    Copies of a few stays under new RSA numbers, half with GHM 90Z00Z, half with NIR_RET 1;
    they are no stay of the truth (staging drops them before any analysis).
    """
    picked = stays.filter(pl.Series(rng.random(stays.height) < rate))
    if picked.height == 0:
        return picked
    error_ghm = pl.Series(rng.random(picked.height) < 0.5)
    rejected = picked.with_columns(
        GRG_GHM=pl.when(error_ghm).then(pl.lit("90Z00Z")).otherwise(pl.col("GRG_GHM")),
        NIR_RET=pl.when(error_ghm).then(pl.col("NIR_RET")).otherwise(pl.lit("1")),
    )
    rsa = _rsa_numbers(rejected, rsa_next)
    return rejected.with_columns(RSA_NUM=rsa.cast(pl.String).str.zfill(10))


def _diagnoses(stays: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    mask = stays["comorbidities"].to_numpy()
    rows_l, codes_l = [], []
    for j, code in enumerate(COMORBIDITY_CODES):
        rows = np.flatnonzero((mask >> j) & 1)
        rows_l.append(rows)
        codes_l.append(np.full(rows.size, code))
    ama_rows = np.flatnonzero(stays["against_medical_advice"].fill_null(False).to_numpy())
    rows_l.append(ama_rows)
    codes_l.append(np.full(ama_rows.size, catalog.AGAINST_MEDICAL_ADVICE_CODE))
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
    keys = stays.select(pl.col("row").cast(pl.Int64), PMSI_YEAR_COLUMN, "ETA_NUM", "RSA_NUM")
    frame = (
        frame.with_columns(pl.col("row").cast(pl.Int64))
        .join(keys, on="row")
        .sort(PMSI_YEAR_COLUMN, "ETA_NUM", "RSA_NUM", "DGN_ASS_NUM")
    )
    return _select_raw("diagnoses", frame)


def dispensings_table(
    pat: Patients, dispensings: pl.DataFrame, chunk: int, start: np.datetime64
) -> pl.DataFrame:
    """ER_PHA_F ⋈ ER_PRS_F on the nine DCIR keys (one pharmacy line per claim), ATC from IR_PHA_R."""
    ids = pat.patient_id[dispensings["patient_idx"].to_numpy()]
    flow = _day(pl.col("day"), start).dt.month_end() + pl.duration(days=1)  # claims flow in the month after
    frame = dispensings.with_row_index("row").with_columns(
        DCT_ORD_NUM=pl.col("row").cast(pl.Int64) + chunk * CLAIMS_PER_CHUNK + 1,
        FLX_DIS_DTD=flow.dt.strftime(RAW_DATE_FORMAT),
        FLX_TRT_DTD=flow.dt.strftime(RAW_DATE_FORMAT),
        **{k: pl.lit(v) for k, v in _DCIR_CONSTANTS.items()},
        BEN_NIR_PSA=pl.Series(ids),
        BEN_RNG_GEM=pl.lit("1"),
        EXE_SOI_DTD=_dates(pl.col("day"), start),
        PHA_PRS_C13=pl.col("cip13"), PHA_ACT_QSN=pl.col("boxes"),
        PHA_CIP_C13=pl.col("cip13"), PHA_ATC_C07=pl.col("atc"),
        BSE_REM_MNT=pl.col("amount").cast(pl.String),
    )
    assert all(k in frame.columns for k in DCIR_KEYS)
    return _select_raw("dispensings", frame)


def drug_referential() -> pl.DataFrame:
    """IR_PHA_R: the CIP13 -> ATC referential of every simulated product."""
    rows = sorted({(cip, atc) for drugs in catalog.DRUGS.values() for atc, cip, _ in drugs})
    return pl.DataFrame({"PHA_CIP_C13": [r[0] for r in rows], "PHA_ATC_C07": [r[1] for r in rows]})


def split_sources(table: str, frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Cut a (dirty) logical table into its SNDS files: file name -> rows (String columns).

    Yearly sources get one file per PMSI year; referential lookups (IR_PHA_R) are written
    once by the caller, not per row.
    """
    spec = RAW_TABLES[table]
    out: dict[str, pl.DataFrame] = {}
    for name in (spec.driving, *spec.links, *(s for s, _, _ in spec.lookups if s != "IR_PHA_R")):
        source = SOURCES[name]
        columns = list(source.columns)
        if not source.yearly:
            out[source.file_name()] = frame.select(columns)
            continue
        for (year,), part in frame.partition_by(PMSI_YEAR_COLUMN, as_dict=True, maintain_order=True).items():
            out[source.file_name(int(str(year)))] = part.select(columns)
    return out
