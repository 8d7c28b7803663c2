"""Shared table contracts: raw SNDS-shaped exports and the clean analytic tables.

The raw side names the files and SNDS columns the simulator writes and the cleaner
expects (a real extract with the same columns goes through unchanged). The clean side
is the typed schema that `clean` writes, the warehouse reads and the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

RAW_SEPARATOR = ";"
RAW_DATE_FORMAT = "%d/%m/%Y"
IDF_DEPARTMENTS: tuple[str, ...] = ("75", "77", "78", "91", "92", "93", "94", "95")


@dataclass(frozen=True)
class RawTable:
    """One raw export: its file, its SNDS columns (in order) and the columns of its row key."""

    name: str
    file: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


RAW_TABLES: dict[str, RawTable] = {
    t.name: t
    for t in (
        RawTable(
            name="patients",
            file="IR_BEN_R.csv",
            columns=(
                "BEN_NIR_PSA",  # pseudonymous beneficiary id
                "BEN_RNG_GEM",  # birth rank (twins)
                "BEN_SEX_COD",  # 1 male, 2 female
                "BEN_NAI_ANN",  # birth year
                "BEN_RES_DPT",  # residence department (dirty: '93', '093', '93200')
                "BEN_RES_COM",  # residence commune (INSEE code, 5 chars)
                "BEN_DCD_DTE",  # death date dd/mm/yyyy, empty if alive
            ),
            key=("BEN_NIR_PSA",),
        ),
        RawTable(
            name="hospitals",
            file="BE_IDE_R.csv",
            columns=(
                "IDE_ETA_NUM",  # FINESS (9 chars, starts with the department)
                "IDE_ETA_NOM",  # short name
                "IDE_BDI_COD",  # postal code
                "IDE_PSH_CAT",  # category code (see GLOSSARY below)
                "IDE_LIT_NBR",  # beds (SAE figure joined by the extract; not a BE_IDE_R column)
            ),
            key=("IDE_ETA_NUM",),
        ),
        RawTable(
            name="stays",
            # T_MCOaaB joined with T_MCOaaC on (ETA_NUM, RSA_NUM) and the stay valuation
            # (T_MCOaaVALO.MNT_TOT_AM), as a project extract usually delivers them.
            file="T_MCOaaBC.csv",
            columns=(
                "ETA_NUM",  # FINESS of the hospital
                "RSA_NUM",  # stay index within the hospital
                "NIR_ANO_17",  # pseudonymous patient id (same value as BEN_NIR_PSA)
                "EXE_SOI_DTD",  # admission date
                "EXE_SOI_DTF",  # discharge date
                "SEJ_NBJ",  # length of stay in days
                "DGN_PAL",  # main diagnosis (ICD-10)
                "DGN_REL",  # related diagnosis (ICD-10), often empty
                "ENT_MOD",  # entry mode: 8 home, 7 transfer, 6 mutation, 0 transfer for an act
                "ENT_PRV",  # provenance: 5 via emergency department, 1 from another MCO unit ...
                "SOR_MOD",  # exit mode: 8 home, 7 transfer, 6 mutation, 0 act transfer, 9 death
                "SOR_DES",  # destination when transferred
                "GRG_GHM",  # DRG (GHM) code
                "AGE_ANN",  # age in years at admission
                "COD_SEX",  # 1 male, 2 female
                "BDI_DEP",  # residence department (dirty formats)
                "MNT_TOT_AM",  # stay valuation in euros (dirty: decimal commas, missing, negative)
            ),
            key=("ETA_NUM", "RSA_NUM"),
        ),
        RawTable(
            name="diagnoses",
            file="T_MCOaaD.csv",
            columns=("ETA_NUM", "RSA_NUM", "DGN_ASS_NUM", "ASS_DGN"),
            key=("ETA_NUM", "RSA_NUM", "DGN_ASS_NUM"),
        ),
        RawTable(
            name="dispensings",
            file="ER_PHA_F.csv",
            columns=(
                "DCT_ORD_NUM",  # dispensing (claim) id
                "BEN_NIR_PSA",  # pseudonymous beneficiary id
                "EXE_SOI_DTD",  # dispensing date
                "PHA_PRS_C13",  # CIP13 product code
                "PHA_ATC_C07",  # ATC code (from IR_PHA_R, joined by the extract)
                "PHA_ACT_QSN",  # boxes
                "BSE_REM_MNT",  # reimbursed amount in euros (dirty: decimal commas)
            ),
            key=("DCT_ORD_NUM",),
        ),
    )
}

# Category codes used in IDE_PSH_CAT (simplified from the FINESS categories).
HOSPITAL_CATEGORIES: dict[str, str] = {
    "101": "AP-HP/CHU",
    "355": "CH",
    "365": "ESPIC",
    "128": "Private clinic",
}

# PMSI codes accepted by clean, the same as the warehouse's seeds (dbt/seeds/ref_exit_modes.csv,
# ref_provenances.csv; tests/test_clean_dbt_contract.py checks they agree).
SEX_CODES: tuple[int, ...] = (1, 2)  # BEN_SEX_COD and COD_SEX: 1 male, 2 female
EXIT_MODES: tuple[str, ...] = ("0", "6", "7", "8", "9")  # ENT_MOD and SOR_MOD (MS_SOR_V)
PROVENANCES: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7")  # ENT_PRV and SOR_DES (MS_PRV_V)

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
        "stay_id": pl.String(),  # "<hospital_id>-<rsa_num>"
        "hospital_id": pl.String(),
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
    },
    "diagnoses": {
        "stay_id": pl.String(),
        "hospital_id": pl.String(),
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
    "line_number": pl.Int64(),  # 1-based line in the raw file (header is line 1)
    "reason": pl.String(),  # e.g. "discharge_before_admission"
    "detail": pl.String(),  # column and offending value, for the human reading it
}

# Truth files written by `generate`, read only by evaluation and tests.
TRUTH_STAYS_FILE = "stay_outcomes.parquet"
TRUTH_CORRUPTIONS_FILE = "corruptions.parquet"


def stay_id_expr(hospital: pl.Expr, rsa: pl.Expr) -> pl.Expr:
    """The stay key shared by every layer: FINESS and RSA number, dash-separated."""
    return pl.concat_str([hospital, pl.lit("-"), rsa.cast(pl.String)])


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
    "episode_id": pl.String(),  # stay_id of the first stay of its transfer chain
    "true_probability": pl.Float64(),  # probability the episode is followed by a readmission
    "readmitted_30d": pl.Boolean(),  # the draw: an unplanned stay 1-30 days after the episode
    "planned": pl.Boolean(),  # planned session (chemotherapy, dialysis, radiotherapy)
}

# The ML feature mart (dbt model ml_readmission_features, exported to
# data/features/ml_readmission_features.parquet): one row per index stay, only what is
# known at discharge of the index stay. Key, split date and label are not features.
FEATURE_KEY = "stay_id"
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
# column through (same name, or prefixed like previous_discharge_date). tests/test_clean_dbt_contract.py
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
    ("stg_hospitals", "hospital_category", "not_null"): ("hospitals", "invalid_code"),
    ("stg_hospitals", "hospital_category", "accepted_values"): ("hospitals", "invalid_code"),
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
    ("stg_stays", "stay_cost", "not_null"): ("stays", "missing_cost"),
    ("stg_stays", "stay_cost", "non_negative"): ("stays", "negative_cost"),
    ("stg_diagnoses", "", "unique_combination"): ("diagnoses", "duplicate_key"),
    ("stg_diagnoses", "stay_id", "not_null"): ("diagnoses", "missing_value"),
    ("stg_diagnoses", "icd10_code", "not_null"): ("diagnoses", "missing_value"),
    ("stg_dispensings", "dispensing_id", "unique"): ("dispensings", "duplicate_key"),
    ("stg_dispensings", "dispensing_id", "not_null"): ("dispensings", "missing_value"),
    ("stg_dispensings", "patient_id", "not_null"): ("dispensings", "missing_value"),
    ("stg_dispensings", "dispensing_date", "not_null"): ("dispensings", "missing_value"),
    ("stg_dispensings", "amount", "non_negative"): ("dispensings", "negative_value"),
    # later models carrying a clean column through
    ("int_stay_episodes", "stay_id", "unique"): ("stays", "duplicate_key"),
    ("int_stay_episodes", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("int_episodes", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("int_episodes", "length_of_stay", "non_negative"): ("stays", "discharge_before_admission"),
    ("int_episodes", "stay_cost", "not_null"): ("stays", "missing_cost"),
    ("int_episodes", "stay_cost", "non_negative"): ("stays", "negative_cost"),
    ("dim_patients", "sex", "accepted_values"): ("stays", "invalid_sex"),
    ("dim_patients", "last_discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    # a stay nested in an earlier-admitted one (a discharge typo like 2099) breaks the pathway order
    ("fct_patient_pathway", "previous_discharge_date", "not_after"): ("stays", "encloses_stay"),
    ("dim_hospitals", "hospital_id", "unique"): ("hospitals", "duplicate_key"),
    ("dim_hospitals", "hospital_category", "accepted_values"): ("hospitals", "invalid_code"),
    ("dim_hospitals", "beds", "non_negative"): ("hospitals", "negative_value"),
    ("fct_stays", "stay_id", "unique"): ("stays", "duplicate_key"),
    ("fct_stays", "hospital_id", "relationships"): ("stays", "unknown_finess"),
    ("fct_stays", "discharge_date", "not_before"): ("stays", "discharge_before_admission"),
    ("fct_stays", "discharge_mode", "accepted_values"): ("stays", "invalid_code"),
    ("fct_stays", "stay_cost", "not_null"): ("stays", "missing_cost"),
    ("fct_stays", "stay_cost", "non_negative"): ("stays", "negative_cost"),
    ("ml_readmission_features", "age", "not_null"): ("stays", "missing_value"),
    ("ml_readmission_features", "sex", "accepted_values"): ("stays", "invalid_sex"),
    ("ml_readmission_features", "length_of_stay", "non_negative"): ("stays", "discharge_before_admission"),
    ("ml_readmission_features", "stay_cost", "not_null"): ("stays", "missing_cost"),
    ("ml_readmission_features", "stay_cost", "non_negative"): ("stays", "negative_cost"),
}
# Error-level tests on clean-named columns of later models that no raw row can fail, and why.
DBT_TESTS_BY_CONSTRUCTION: dict[DbtTest, str] = {
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
