"""Shared table contracts: raw SNDS-shaped exports and the clean analytic tables.

The raw side names the SNDS tables of an extract (``SOURCES``: file name patterns, the
columns read, keys) and how they join into the five logical tables clean works on
(``RAW_TABLES``). The clean side is the typed schema that `clean` writes, the warehouse
reads and the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

RAW_SEPARATOR = ";"  # what the simulator writes; clean detects ';' or ',' per file
RAW_DATE_FORMAT = "%d/%m/%Y"
IDF_DEPARTMENTS: tuple[str, ...] = ("75", "77", "78", "91", "92", "93", "94", "95")

# The nine DCIR keys joining ER_PRS_F (claims) and its detail tables such as ER_PHA_F.
DCIR_KEYS: tuple[str, ...] = (
    "DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP",
    "FLX_TRT_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF",
)


@dataclass(frozen=True)
class SourceTable:
    """One table of an SNDS extract (or of the external FINESS/SAE extract).

    ``pattern`` matches the file name without extension, case-insensitive; a yearly PMSI
    table captures the two-digit year in group ``yy``. ``columns`` are the columns the
    project reads (``required`` must be in the header, the others may be absent and are
    then null); extra columns of a real extract are ignored.
    """

    name: str  # canonical SNDS name, e.g. T_MCOaaB
    pattern: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    key: tuple[str, ...]
    yearly: bool = False
    snds: bool = True  # False: not an SNDS table (external facts, named as such)
    optional: bool = False  # the extract may lack it: the run degrades with a message
    without: str = ""  # what the project does without it (for that message)
    dates: tuple[str, ...] = ()  # date columns: their format is detected per file

    def file_name(self, year: int | None = None) -> str:
        """The name the simulator writes (yearly tables: T_MCO21B.csv ...)."""
        if self.yearly:
            assert year is not None
            return self.name.replace("aa", f"{year % 100:02d}") + ".csv"
        return f"{self.name}.csv"


_PMSI_KEY = ("ETA_NUM", "RSA_NUM")
SOURCES: dict[str, SourceTable] = {
    s.name: s
    for s in (
        SourceTable(
            "IR_BEN_R", r"IR_BEN_R",
            columns=("BEN_NIR_PSA", "BEN_RNG_GEM", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_RES_DPT",
                     "BEN_RES_COM", "BEN_DCD_DTE"),
            required=("BEN_NIR_PSA", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_RES_DPT"),
            key=("BEN_NIR_PSA",), dates=("BEN_DCD_DTE",),
        ),
        SourceTable(
            "BE_IDE_R", r"BE_IDE_R",
            columns=("IDE_ETA_NUM", "IDE_ETA_NU8", "IDE_ETA_NOM", "IDE_BDI_COD", "IDE_PSH_CAT"),
            required=("IDE_ETA_NUM", "IDE_BDI_COD"),
            key=("IDE_ETA_NUM",),
        ),
        SourceTable(
            # Not SNDS: the FINESS category (public FINESS file, 'categetab') and MCO beds (SAE).
            "EXT_FINESS_SAE", r"EXT_FINESS_SAE",
            columns=("nofinesset", "categetab", "lit_mco"),
            required=("nofinesset",),
            key=("nofinesset",),
            snds=False, optional=True,
            without="hospital category 'Unknown' and beds null for every establishment",
        ),
        SourceTable(
            "T_MCOaaB", r"T_MCO(?P<yy>[0-9]{2})B",
            columns=("ETA_NUM", "RSA_NUM", "SEJ_NBJ", "DGN_PAL", "DGN_REL", "ENT_MOD", "ENT_PRV",
                     "SOR_MOD", "SOR_DES", "GRG_GHM", "AGE_ANN", "COD_SEX", "BDI_DEP"),
            required=("ETA_NUM", "RSA_NUM", "DGN_PAL", "ENT_MOD", "SOR_MOD", "GRG_GHM", "AGE_ANN", "COD_SEX",
                      "BDI_DEP"),
            key=_PMSI_KEY, yearly=True,
        ),
        SourceTable(
            "T_MCOaaC", r"T_MCO(?P<yy>[0-9]{2})C",
            columns=("ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF",
                     "NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"),
            required=("ETA_NUM", "RSA_NUM", "NIR_ANO_17", "EXE_SOI_DTD", "EXE_SOI_DTF"),
            key=_PMSI_KEY, yearly=True, dates=("EXE_SOI_DTD", "EXE_SOI_DTF"),
        ),
        SourceTable(
            "T_MCOaaVALO", r"T_MCO(?P<yy>[0-9]{2})VALO",
            columns=("ETA_NUM", "RSA_NUM", "MNT_TOT_AM", "VALO"),
            required=("ETA_NUM", "RSA_NUM", "MNT_TOT_AM"),
            key=_PMSI_KEY, yearly=True, optional=True,
            without="stay_cost null for the stays of that year (no cost check, cost features empty)",
        ),
        SourceTable(
            "T_MCOaaD", r"T_MCO(?P<yy>[0-9]{2})D",
            columns=("ETA_NUM", "RSA_NUM", "DGN_ASS_NUM", "ASS_DGN"),
            required=("ETA_NUM", "RSA_NUM", "DGN_ASS_NUM", "ASS_DGN"),
            key=(*_PMSI_KEY, "DGN_ASS_NUM"), yearly=True, optional=True,
            without="no associated diagnoses for the stays of that year (Charlson score 0)",
        ),
        SourceTable(
            "ER_PRS_F", r"ER_PRS_F(_.*)?",
            columns=(*DCIR_KEYS, "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "BSE_REM_MNT"),
            required=(*DCIR_KEYS, "BEN_NIR_PSA", "EXE_SOI_DTD", "BSE_REM_MNT"),
            key=DCIR_KEYS, optional=True, dates=("EXE_SOI_DTD", "FLX_DIS_DTD", "FLX_TRT_DTD"),
            without="no pharmacy dispensings (prior_atc_classes_90d is 0 for everyone)",
        ),
        SourceTable(
            "ER_PHA_F", r"ER_PHA_F(_.*)?",
            columns=(*DCIR_KEYS, "PHA_PRS_C13", "PHA_ACT_QSN"),
            required=(*DCIR_KEYS, "PHA_PRS_C13", "PHA_ACT_QSN"),
            key=DCIR_KEYS, optional=True, dates=("FLX_DIS_DTD", "FLX_TRT_DTD"),
            without="no pharmacy dispensings (prior_atc_classes_90d is 0 for everyone)",
        ),
        SourceTable(
            "IR_PHA_R", r"IR_PHA_R",
            columns=("PHA_CIP_C13", "PHA_ATC_C07"),
            required=("PHA_CIP_C13", "PHA_ATC_C07"),
            key=("PHA_CIP_C13",), optional=True,
            without="ATC code null for every dispensing (prior_atc_classes_90d is 0)",
        ),
    )
}


@dataclass(frozen=True)
class RawTable:
    """One logical raw table: the joined SNDS sources clean turns into one clean table.

    ``driving`` is the source whose rows become the table's rows; ``links`` are joined on
    their key one-to-one (same PMSI year for yearly tables); ``lookups`` are referentials
    joined many-to-one. ``columns`` is the union of the raw columns, in order.
    """

    name: str
    driving: str
    links: tuple[str, ...]
    lookups: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]  # (source, left cols, its key cols)
    columns: tuple[str, ...]
    key: tuple[str, ...]


def _union(*names: str) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        out += [c for c in SOURCES[name].columns if c not in out]
    return tuple(out)


RAW_TABLES: dict[str, RawTable] = {
    t.name: t
    for t in (
        RawTable("patients", "IR_BEN_R", (), (), _union("IR_BEN_R"), ("BEN_NIR_PSA",)),
        RawTable(
            "hospitals", "BE_IDE_R", (), (("EXT_FINESS_SAE", ("IDE_ETA_NUM",), ("nofinesset",)),),
            _union("BE_IDE_R", "EXT_FINESS_SAE"), ("IDE_ETA_NUM",),
        ),
        RawTable(
            "stays", "T_MCOaaB", ("T_MCOaaC", "T_MCOaaVALO"), (),
            ("PMSI_YEAR", *_union("T_MCOaaB", "T_MCOaaC", "T_MCOaaVALO")), ("PMSI_YEAR", *_PMSI_KEY),
        ),
        RawTable(
            "diagnoses", "T_MCOaaD", (), (), ("PMSI_YEAR", *_union("T_MCOaaD")),
            ("PMSI_YEAR", *_PMSI_KEY, "DGN_ASS_NUM"),
        ),
        RawTable(
            "dispensings", "ER_PHA_F", ("ER_PRS_F",), (("IR_PHA_R", ("PHA_PRS_C13",), ("PHA_CIP_C13",)),),
            _union("ER_PHA_F", "ER_PRS_F", "IR_PHA_R"), DCIR_KEYS,
        ),
    )
}
# Raw column added by stacking yearly tables: the PMSI year of the file (4 digits).
PMSI_YEAR_COLUMN = "PMSI_YEAR"

# FINESS categories ('categetab' of the public FINESS file) with an analytic group of their
# own; every other category is 'Other', and no FINESS/SAE extract at all gives 'Unknown'.
HOSPITAL_CATEGORIES: dict[str, str] = {
    "101": "AP-HP/CHU",
    "355": "CH",
    "365": "ESPIC",
    "128": "Private clinic",
}
OTHER_CATEGORY = "Other"
UNKNOWN_CATEGORY = "Unknown"
HOSPITAL_CATEGORY_VALUES: tuple[str, ...] = (*HOSPITAL_CATEGORIES.values(), OTHER_CATEGORY, UNKNOWN_CATEGORY)

# PMSI codes accepted by clean: every code of the nomenclatures MS_SOR_V / MS_PRV_V, unknown and
# not-applicable included; the dbt seeds ref_exit_modes / ref_provenances hold exactly these
# (tests/unit/test_code_sets.py and tests/data/test_clean_dbt_contract.py check they agree).
EXIT_MODES: tuple[str, ...] = ("-1", "-2", "0", "6", "7", "8", "9")  # ENT_MOD and SOR_MOD (MS_SOR_V)
PROVENANCES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "9")  # ENT_PRV and SOR_DES (MS_PRV_V)
# T_MCOaaC control ("code retour") columns: a stay is chained reliably when all are '0'.
PMSI_RETURN_CODES: tuple[str, ...] = ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")
# Sex (BEN_SEX_COD, COD_SEX): 1 male, 2 female; PMSI 7/8/9 and DCIR 0/9 mean unknown, stored as 9.
SEX_UNKNOWN = 9
SEX_CODE_MAP: dict[str, int] = {"1": 1, "2": 2, "0": SEX_UNKNOWN, "7": SEX_UNKNOWN, "8": SEX_UNKNOWN, "9": SEX_UNKNOWN}
SEX_CODES: tuple[int, ...] = (1, 2, SEX_UNKNOWN)  # the clean values (dbt accepted_values)

# Clean tables: analytic names and Polars dtypes. Every clean Parquet matches exactly.
CLEAN_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "patients": {
        "patient_id": pl.String(),
        "birth_rank": pl.Int16(),
        "sex": pl.Int8(),
        "birth_year": pl.Int16(),
        "department": pl.String(),
        "commune": pl.String(),
        "death_date": pl.Date(),
    },
    "hospitals": {
        "hospital_id": pl.String(),
        "hospital_name": pl.String(),
        "postal_code": pl.String(),
        "department": pl.String(),
        "category_code": pl.String(),
        "category": pl.String(),
        "beds": pl.Int32(),
    },
    "stays": {
        "stay_id": pl.String(),  # "<hospital_id>-<pmsi_year>-<rsa_num>"
        "hospital_id": pl.String(),
        "pmsi_year": pl.Int16(),  # year of the PMSI table (T_MCO23B -> 2023): RSA_NUM restarts every year
        "rsa_num": pl.Int64(),
        "patient_id": pl.String(),
        "admission_date": pl.Date(),
        "discharge_date": pl.Date(),
        "length_of_stay": pl.Int32(),
        "icd10_code": pl.String(),
        "related_icd10_code": pl.String(),
        "entry_mode": pl.String(),
        "entry_source": pl.String(),
        "discharge_mode": pl.String(),
        "discharge_destination": pl.String(),
        "ghm_code": pl.String(),
        "age": pl.Int16(),
        "sex": pl.Int8(),
        "department": pl.String(),
        "stay_cost": pl.Float64(),
        # T_MCOaaC control codes (NIR_RET, NAI_RET, SEX_RET, SEJ_RET, FHO_RET, PMS_RET, DAT_RET) all '0' or
        # absent: the chaining of the stay to its patient is reliable. Staging drops the others.
        "pmsi_return_codes_ok": pl.Boolean(),
    },
    "diagnoses": {
        "stay_id": pl.String(),
        "hospital_id": pl.String(),
        "pmsi_year": pl.Int16(),
        "rsa_num": pl.Int64(),
        "diagnosis_rank": pl.Int16(),
        "icd10_code": pl.String(),
    },
    "dispensings": {
        "dispensing_id": pl.String(),
        "patient_id": pl.String(),
        "dispensing_date": pl.Date(),
        "cip13": pl.String(),
        "atc_code": pl.String(),
        "boxes": pl.Int32(),
        "amount": pl.Float64(),
    },
}

# Quarantine files keep every raw column as text plus these.
QUARANTINE_EXTRA_COLUMNS: dict[str, pl.DataType] = {
    "source_file": pl.String(),  # the raw file the row comes from (e.g. T_MCO23C.csv)
    "line_number": pl.Int64(),  # 1-based line in that file (header is line 1)
    "raw_line": pl.String(),  # the whole raw text of a malformed line (its columns are then null)
    "reason": pl.String(),  # e.g. "discharge_before_admission"
    "detail": pl.String(),  # column and offending value, for the human reading it
}

# Truth files written by `generate`, read only by evaluation and tests.
TRUTH_STAYS_FILE = "stay_outcomes.parquet"
TRUTH_CORRUPTIONS_FILE = "corruptions.parquet"


def stay_id_expr(hospital: pl.Expr, year: pl.Expr, rsa: pl.Expr) -> pl.Expr:
    """The stay key shared by every layer: FINESS, PMSI year and RSA number, dash-separated.

    RSA_NUM restarts every PMSI year, so the year is part of the key.
    """
    return pl.concat_str([hospital, pl.lit("-"), year.cast(pl.String), pl.lit("-"), rsa.cast(pl.String)])


@dataclass(frozen=True)
class CorruptionKind:
    """A kind of dirt the simulator injects and what cleaning must do with it."""

    name: str
    tables: tuple[str, ...]
    outcome: str  # "repaired", "quarantined" or "dropped"


CORRUPTION_KINDS: dict[str, CorruptionKind] = {
    k.name: k
    for k in (
        CorruptionKind("department_format", ("patients", "stays"), "repaired"),
        CorruptionKind("icd_format", ("stays", "diagnoses"), "repaired"),
        CorruptionKind("decimal_comma", ("stays", "dispensings"), "repaired"),
        CorruptionKind("discharge_before_admission", ("stays",), "quarantined"),
        CorruptionKind("missing_cost", ("stays",), "quarantined"),
        CorruptionKind("negative_cost", ("stays",), "quarantined"),
        CorruptionKind("unknown_finess", ("stays",), "quarantined"),
        CorruptionKind("impossible_age", ("stays",), "quarantined"),
        CorruptionKind("impossible_birth_year", ("patients",), "quarantined"),
        CorruptionKind("malformed_line", tuple(RAW_TABLES), "quarantined"),
        CorruptionKind("duplicate_row", tuple(RAW_TABLES), "dropped"),
    )
}

# Columns of data/truth/corruptions.parquet: one row per injected corruption.
# row_key is the raw key columns' values as written in the raw file, joined with "|".
TRUTH_CORRUPTION_COLUMNS: dict[str, pl.DataType] = {
    "table": pl.String(),
    "row_key": pl.String(),
    "kind": pl.String(),
    "column": pl.String(),
    "raw_value": pl.String(),  # the value as written in the raw file ("" for row-level kinds)
    "original_value": pl.String(),  # the value before corruption: what a repair must give back
}

# Columns of data/truth/stay_outcomes.parquet: one row per generated stay.
TRUTH_STAY_COLUMNS: dict[str, pl.DataType] = {
    "stay_id": pl.String(),
    "episode_id": pl.String(),  # stay_id of the first stay of its episode (transfer / same-day chain)
    # unplanned (first stay of an episode), transfer, same_day_return (same hospital and diagnosis,
    # back the day of a home discharge: one stay for the definition), planned_procedure, planned_session
    "stay_kind": pl.String(),
    "true_probability": pl.Float64(),  # P(an unplanned episode 0-30 days after the episode): the oracle
    "readmission_probability": pl.Float64(),  # the planted model's readmission probability alone
    "readmitted_30d": pl.Boolean(),  # what the definition must find: an unplanned episode 0-30 days after
    "return_reason": pl.String(),  # why, when readmitted_30d: readmission (the draw) | unrelated (background)
    "return_days": pl.Int64(),  # days from the episode's discharge to that return
    "planned_return_days": pl.Int64(),  # a planned procedure scheduled at discharge that took place, days after
    "against_medical_advice": pl.Boolean(),  # this stay, its episode's last, ended against medical advice
    "planned": pl.Boolean(),  # planned care: a session (chemotherapy, dialysis, radiotherapy) or procedure
}

# The ML feature mart (dbt model ml_readmission_features, exported to
# data/features/ml_readmission_features.parquet): one row per index stay, only what is
# known at discharge of the index stay. Key, split date and label are not features.
FEATURE_KEY = "stay_id"
# The dbt mart that features exports (warehouse counts it too): schema.table in the DuckDB file.
FEATURES_RELATION = "marts.ml_readmission_features"
FEATURE_SPLIT_DATE = "discharge_date"
FEATURE_LABEL = "readmitted_30d"
NUMERIC_FEATURES: dict[str, pl.DataType] = {
    "age": pl.Int32(),
    "sex": pl.Int32(),  # 1 male, 2 female
    "deprivation_rate": pl.Float64(),  # Insee poverty rate of the residence department (%)
    "length_of_stay": pl.Int32(),  # days, whole transfer chain
    "emergency_admission": pl.Int32(),  # 1 if the episode started through the ED
    "charlson_score": pl.Int32(),  # from associated diagnoses of the episode
    "prior_stays_6m": pl.Int32(),  # unplanned episodes admitted in the 182 days before
    "prior_stays_12m": pl.Int32(),  # unplanned episodes admitted in the 365 days before
    "prior_emergency_6m": pl.Int32(),  # of which through the ED
    "prior_emergency_12m": pl.Int32(),
    "days_since_last_discharge": pl.Int32(),  # null when no earlier stay in the data
    "stay_cost": pl.Float64(),  # euros, whole transfer chain
    "prior_atc_classes_90d": pl.Int32(),  # distinct ATC level-3 classes dispensed in 90 days before admission
    "lace_score": pl.Int32(),  # LACE index (van Walraven 2010)
}
CATEGORICAL_FEATURES: dict[str, pl.DataType] = {
    "department": pl.String(),
    "diagnosis_group": pl.String(),  # COPD, HEART_FAILURE, DIABETES, CKD, CANCER, STROKE, ...
    "hospital_category": pl.String(),  # contracts.HOSPITAL_CATEGORIES values
    "discharge_destination": pl.String(),  # home, transfer_mco, transfer_ssr, other
}
FEATURE_SCHEMA: dict[str, pl.DataType] = {
    FEATURE_KEY: pl.String(),
    FEATURE_SPLIT_DATE: pl.Date(),
    **NUMERIC_FEATURES,
    **CATEGORICAL_FEATURES,
    FEATURE_LABEL: pl.Int32(),
}

# --------------------------------------------------------------------------- clean <-> dbt
# One dirty raw row must never stop the warehouse: every error-level dbt test that raw data can
# reach has a clean quarantine rule keeping violating rows out of data/clean. A test can be reached
# when its model is a staging model (a typed copy of a clean table) or its column carries a clean
# column through (same name, or prefixed like previous_discharge_date). tests/data/test_clean_dbt_contract.py
# derives the tests from dbt/models/**/*.yml, checks that each is in exactly one of the two mappings
# below, then feeds a violating row per rule.
# Key: (dbt model, column or "" for a model-level test, test name); value: (raw table, reason).
DbtTest = tuple[str, str, str]
DBT_TEST_REASONS: dict[DbtTest, tuple[str, str]] = {
    # staging: the clean tables renamed
    ("stg_patients", "patient_id", "unique"): ("patients", "duplicate_key"),
    ("stg_patients", "patient_id", "not_null"): ("patients", "missing_value"),
    ("stg_patients", "sex", "accepted_values"): ("patients", "invalid_sex"),
    ("stg_hospitals", "hospital_id", "unique"): ("hospitals", "duplicate_key"),
    ("stg_hospitals", "hospital_id", "not_null"): ("hospitals", "missing_value"),
    ("stg_hospitals", "beds", "non_negative"): ("hospitals", "negative_value"),
    ("stg_stays", "stay_id", "unique"): ("stays", "duplicate_key"),
    ("stg_stays", "stay_id", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "patient_id", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "hospital_id", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "hospital_id", "relationships"): ("stays", "unknown_finess"),
    ("stg_stays", "admission_date", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "discharge_date", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("stg_stays", "length_of_stay", "non_negative"): ("stays", "negative_length_of_stay"),
    ("stg_stays", "icd10_code", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "entry_mode", "relationships"): ("stays", "invalid_code"),
    ("stg_stays", "entry_source", "relationships"): ("stays", "invalid_code"),
    ("stg_stays", "discharge_mode", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "discharge_mode", "relationships"): ("stays", "invalid_code"),
    ("stg_stays", "discharge_destination", "relationships"): ("stays", "invalid_code"),
    ("stg_stays", "age", "not_null"): ("stays", "missing_value"),
    ("stg_stays", "age", "value_between"): ("stays", "impossible_age"),
    ("stg_stays", "sex", "accepted_values"): ("stays", "invalid_sex"),
    ("stg_stays", "stay_cost", "non_negative"): ("stays", "negative_cost"),
    ("stg_diagnoses", "", "unique_combination"): ("diagnoses", "duplicate_key"),
    ("stg_diagnoses", "stay_id", "not_null"): ("diagnoses", "missing_value"),
    ("stg_diagnoses", "icd10_code", "not_null"): ("diagnoses", "missing_value"),
    ("stg_dispensings", "dispensing_id", "unique"): ("dispensings", "duplicate_key"),
    ("stg_dispensings", "dispensing_id", "not_null"): ("dispensings", "missing_value"),
    ("stg_dispensings", "patient_id", "not_null"): ("dispensings", "missing_value"),
    ("stg_dispensings", "dispensing_date", "not_null"): ("dispensings", "missing_value"),
    ("stg_dispensings", "amount", "non_negative"): ("dispensings", "negative_value"),
    ("stg_pmsi_exclusions", "stay_id", "unique"): ("stays", "duplicate_key"),
    ("stg_pmsi_exclusions", "stay_id", "not_null"): ("stays", "missing_value"),
    # later models carrying a clean column through
    ("int_stay_episodes", "stay_id", "unique"): ("stays", "duplicate_key"),
    ("int_stay_episodes", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("int_episodes", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("int_episodes", "length_of_stay", "non_negative"): ("stays", "discharge_before_admission"),
    ("int_episodes", "stay_cost", "non_negative"): ("stays", "negative_cost"),
    ("dim_patients", "sex", "accepted_values"): ("stays", "invalid_sex"),
    ("dim_patients", "last_discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    # a stay nested in an earlier-admitted one (a discharge typo like 2099) breaks the pathway order
    ("fct_patient_pathway", "previous_discharge_date", "not_after"): ("stays", "encloses_stay"),
    ("dim_hospitals", "hospital_id", "unique"): ("hospitals", "duplicate_key"),
    ("dim_hospitals", "beds", "non_negative"): ("hospitals", "negative_value"),
    ("fct_stays", "stay_id", "unique"): ("stays", "duplicate_key"),
    ("fct_stays", "hospital_id", "relationships"): ("stays", "unknown_finess"),
    ("fct_stays", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("fct_stays", "discharge_mode", "accepted_values"): ("stays", "invalid_code"),
    ("fct_stays", "stay_cost", "non_negative"): ("stays", "negative_cost"),
    ("ml_readmission_features", "age", "not_null"): ("stays", "missing_value"),
    ("ml_readmission_features", "sex", "accepted_values"): ("stays", "invalid_sex"),
    ("ml_readmission_features", "length_of_stay", "non_negative"): ("stays", "discharge_before_admission"),
    ("ml_readmission_features", "stay_cost", "non_negative"): ("stays", "negative_cost"),
}
# Error-level tests on clean-named columns of later models that no raw row can fail, and why.
DBT_TESTS_BY_CONSTRUCTION: dict[DbtTest, str] = {
    ("stg_hospitals", "hospital_category", "not_null"): "clean maps every FINESS category (Other, Unknown included)",
    ("stg_hospitals", "hospital_category", "accepted_values"): "clean maps to HOSPITAL_CATEGORY_VALUES only",
    ("dim_hospitals", "hospital_category", "accepted_values"): "from stg_hospitals",
    ("stg_pmsi_exclusions", "pmsi_filter", "accepted_values"): "a case expression giving these three labels",
    ("int_stay_episodes", "stay_id", "not_null"): "one row per stg_stays row (stay_id not null there)",
    ("int_episodes", "patient_id", "not_null"): "the first stay's patient_id (not null in stg_stays)",
    ("int_episodes", "discharge_date", "not_null"): "the last stay's discharge_date (not null in stg_stays)",
    ("int_episodes", "length_of_stay", "not_null"): "difference of two not-null dates",
    ("dim_patients", "patient_id", "unique"): "grouped by patient_id",
    ("dim_patients", "patient_id", "not_null"): "patients of stg_stays (patient_id not null there)",
    ("dim_hospitals", "hospital_id", "not_null"): "one row per stg_hospitals row",
    ("fct_stays", "stay_id", "not_null"): "one row per stg_stays row",
    ("fct_stays", "patient_id", "not_null"): "from stg_stays",
    ("fct_stays", "patient_id", "relationships"): "dim_patients is built from the stays' patients",
    ("fct_stays", "hospital_id", "not_null"): "from stg_stays",
    ("fct_stays", "discharge_date", "not_null"): "from stg_stays",
    ("fct_patient_pathway", "stay_id", "unique"): "one row per fct_stays row",
    ("fct_patient_pathway", "stay_id", "not_null"): "one row per fct_stays row",
    ("fct_patient_pathway", "stay_id", "relationships"): "built from fct_stays",
    ("fct_readmissions", "stay_id", "unique"): "one row per fct_stays row",
    ("fct_readmissions", "stay_id", "not_null"): "one row per fct_stays row",
    ("fct_readmissions", "stay_id", "relationships"): "built from fct_stays",
    ("fct_readmissions", "readmission_stay_id", "relationships"): "a stay id taken from fct_stays",
    ("int_patient_history", "last_discharge_date", "not_after"): "joined on discharges on or before the admission",
    ("agg_department_kpis", "department", "not_null"): "grouped by the stays' department (not null in clean)",
    ("ml_readmission_features", "stay_id", "unique"): "one row per index stay of fct_readmissions",
    ("ml_readmission_features", "stay_id", "not_null"): "index stays of fct_readmissions",
    ("ml_readmission_features", "stay_id", "relationships"): "built from fct_readmissions",
    ("ml_readmission_features", "discharge_date", "not_null"): "the episode's last discharge (not null)",
    ("ml_readmission_features", "length_of_stay", "not_null"): "difference of two not-null dates",
    ("ml_readmission_features", "discharge_destination", "not_null"): "mapped in dbt with an 'other' default",
    ("ml_readmission_features", "discharge_destination", "accepted_values"): "mapped in dbt to these labels",
}
