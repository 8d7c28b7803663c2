"""End-to-end warehouse tests: dbt build over small clean fixtures (tests/support/clean_fixtures.py).

The readmission flags of every stay are recomputed here, independently of the dbt SQL, with
Polars from the clean Parquet, and must equal fct_readmissions. dbt runs twice in this module
(the fixture build and the failure test): each run costs several seconds.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines import contracts
from pipelines.config import Params, Paths
from pipelines.features import FEATURES_FILE, run_features
from pipelines.warehouse import (
    WarehouseError,
    WarehouseParams,
    check_clean_inputs,
    run_warehouse,
)
from tests.support import clean_fixtures as cf

PROJECT_DBT = Path(__file__).resolve().parents[2] / "dbt"
LABEL_COLUMNS = ["stay_id", "episode_id", "is_index", "exclusion_reason", "readmitted_30d",
                 "readmission_stay_id", "days_to_readmission"]


# ---------------------------------------------------------------------------------------------
# Independent recomputation of the readmission definition (Polars, from the clean stays)


ACUTE_PREFIXES = tuple(
    pl.read_csv(PROJECT_DBT / "seeds" / "ref_acute_diagnoses.csv", schema_overrides={"icd10_prefix": pl.String})
    ["icd10_prefix"].to_list()
)
AGAINST_MEDICAL_ADVICE_CODE = "Z532"


def recompute_readmissions(
    stays: pl.DataFrame, wp: WarehouseParams, diagnoses: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One row per stay: episode, index flag, exclusion reason, label, readmission id and delay."""
    s = stays.sort("patient_id", "admission_date", "discharge_date", "stay_id")
    prev = {c: pl.col(c).shift(1).over("patient_id") for c in ("discharge_mode", "hospital_id", "icd10_code")}
    gap = (pl.col("admission_date") - pl.col("discharge_date").shift(1).over("patient_id")).dt.total_days()
    transfer = prev["discharge_mode"].is_in(["0", "6", "7"]) & gap.is_between(0, wp.transfer_gap_days)
    transfer = transfer.fill_null(False)
    same_day = (
        (prev["discharge_mode"] == "8") & (gap == 0) & (pl.col("hospital_id") == prev["hospital_id"])
        & (pl.col("icd10_code").str.slice(0, 3) == prev["icd10_code"].str.slice(0, 3))
    ).fill_null(False)
    s = s.with_columns(
        link=pl.when(transfer).then(pl.lit("transfer")).when(same_day).then(pl.lit("same_day_return"))
    )
    s = s.with_columns(chain_no=pl.col("link").is_null().cast(pl.Int32).cum_sum().over("patient_id"))
    s = s.with_columns(
        episode_id=pl.col("stay_id").first().over("patient_id", "chain_no"),
        rank=pl.int_range(1, pl.len() + 1).over("patient_id", "chain_no"),
    )
    ama_stays = set() if diagnoses is None else set(
        diagnoses.filter(pl.col("icd10_code") == AGAINST_MEDICAL_ADVICE_CODE)["stay_id"].to_list()
    )
    episodes = s.group_by("episode_id", maintain_order=True).agg(
        pl.col("patient_id").first(),
        pl.col("admission_date").first(),
        pl.col("discharge_date").max(),
        pl.col("discharge_mode").last(),
        pl.col("stay_id").last().alias("last_stay_id"),
        pl.col("icd10_code").first(),
        pl.col("ghm_code").first(),
        pl.col("age").first(),
    )
    icd, ghm = pl.col("icd10_code"), pl.col("ghm_code").fill_null("")
    planned_care = (
        icd.str.starts_with("Z49") | icd.str.starts_with("Z510") | icd.str.starts_with("Z511")
        | ghm.str.starts_with("28") | ghm.str.starts_with("27")
    )
    acute = pl.any_horizontal([icd.str.starts_with(p) for p in ACUTE_PREFIXES])
    planned_procedure = ~planned_care & ghm.str.slice(2, 1).is_in(["C", "K"]) & ~acute
    against_advice = (pl.col("discharge_mode") == "8") & pl.col("last_stay_id").is_in(list(ama_stays))
    obstetric = icd.str.starts_with("O") | ghm.str.starts_with("14")
    censor_after = wp.data_end_date - timedelta(days=wp.readmission_window_days)
    episodes = episodes.with_columns(
        planned_care=planned_care, planned=planned_care | planned_procedure
    ).with_columns(
        reason=pl.when(pl.col("discharge_mode") == "9").then(pl.lit("death"))
        .when(pl.col("planned_care")).then(pl.lit("planned_care"))
        .when(pl.col("planned")).then(pl.lit("planned_procedure"))
        .when(against_advice).then(pl.lit("against_medical_advice"))
        .when(obstetric).then(pl.lit("obstetrics"))
        .when(pl.col("age") < wp.minor_age).then(pl.lit("minor"))
        .when(pl.col("admission_date") < pl.lit(wp.data_start_date + timedelta(days=wp.lookback_days)))
        .then(pl.lit("lookback"))
        .when(pl.col("discharge_date") > pl.lit(censor_after)).then(pl.lit("censored"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    later = episodes.filter(~pl.col("planned")).select(
        "patient_id",
        readmission_stay_id=pl.col("episode_id"),
        r_admission=pl.col("admission_date"),
        r_discharge=pl.col("discharge_date"),
    )
    first_readmission = (
        episodes.filter(pl.col("reason").is_null())
        .select("episode_id", "patient_id", "discharge_date")
        .join(later, on="patient_id")
        .with_columns(days_to_readmission=(pl.col("r_admission") - pl.col("discharge_date")).dt.total_days())
        .filter(pl.col("days_to_readmission").is_between(0, wp.readmission_window_days))
        .filter(pl.col("readmission_stay_id") != pl.col("episode_id"))
        .sort("episode_id", "r_admission", "r_discharge", "readmission_stay_id")
        .group_by("episode_id", maintain_order=True)
        .first()
        .select("episode_id", "readmission_stay_id", "days_to_readmission")
    )
    out = (
        s.select("stay_id", "episode_id", "rank", "link")
        .join(episodes.select("episode_id", "reason"), on="episode_id")
        .join(first_readmission, on="episode_id", how="left")
        .with_columns(
            exclusion_reason=pl.when(pl.col("rank") > 1).then(pl.col("link")).otherwise(pl.col("reason"))
        )
        .with_columns(is_index=pl.col("exclusion_reason").is_null())
        .with_columns(
            readmitted_30d=pl.when(pl.col("is_index"))
            .then(pl.col("readmission_stay_id").is_not_null().cast(pl.Int32)),
            readmission_stay_id=pl.when(pl.col("is_index") & (pl.col("rank") == 1)).then(pl.col("readmission_stay_id")),
            days_to_readmission=pl.when(pl.col("is_index") & (pl.col("rank") == 1))
            .then(pl.col("days_to_readmission")),
        )
    )
    return out.select(LABEL_COLUMNS).sort("stay_id")


def read_marts(warehouse: Path, sql: str) -> pl.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        frame: pl.DataFrame = con.sql(sql).pl()
        return frame
    finally:
        con.close()


def new_project(root: Path, tables: dict[str, pl.DataFrame]) -> Paths:
    """A throwaway project root: a copy of the dbt project and the clean tables."""
    shutil.copytree(PROJECT_DBT, root / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    cf.write_clean(root / "data" / "clean", tables)
    return Paths(root)


# ---------------------------------------------------------------------------------------------
# One warehouse build shared by the module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tables, tag_ids, expected = cf.build_clean()
    paths = new_project(tmp_path_factory.mktemp("warehouse"), tables)
    figures = run_warehouse(paths, Params())
    feature_summary = run_features(paths, Params())
    return {"paths": paths, "tables": tables, "tags": tag_ids, "expected": expected,
            "figures": figures, "features": feature_summary}


def dbt_labels(built: dict[str, Any]) -> pl.DataFrame:
    frame = read_marts(built["paths"].warehouse, f"select {', '.join(LABEL_COLUMNS)} from marts.fct_readmissions")
    return frame.with_columns(
        pl.col("readmitted_30d").cast(pl.Int32), pl.col("days_to_readmission").cast(pl.Int64)
    ).sort("stay_id")


def test_every_stay_matches_the_independent_recomputation(built: dict[str, Any]) -> None:
    ours = recompute_readmissions(built["tables"]["stays"], WarehouseParams(), built["tables"]["diagnoses"])
    theirs = dbt_labels(built)
    assert theirs.height == built["tables"]["stays"].height
    assert_frame_equal(theirs, ours.with_columns(pl.col("days_to_readmission").cast(pl.Int64)))


def test_hand_checked_rules(built: dict[str, Any]) -> None:
    """Each scenario of clean_fixtures (death, chains, planned, obstetrics, minor, censoring, ...)."""
    rows = {r["stay_id"]: r for r in dbt_labels(built).iter_rows(named=True)}
    tags: dict[str, str] = built["tags"]
    for tag, exp in built["expected"].items():
        got = rows[tags[tag]]
        assert got["exclusion_reason"] == exp.exclusion_reason, tag
        assert got["readmitted_30d"] == exp.readmitted, tag
        want_id = tags[exp.readmission_tag] if exp.readmission_tag else None
        assert got["readmission_stay_id"] == want_id, tag
        assert got["days_to_readmission"] == exp.days, tag


def test_department_kpis_suppress_small_cells(built: dict[str, Any]) -> None:
    kpis = read_marts(built["paths"].warehouse, "select * from marts.agg_department_kpis")
    figures = ["index_stays", "patients", "readmissions", "readmission_rate",
               "readmission_rate_ci_low", "readmission_rate_ci_high", "total_cost"]
    suppressed = kpis.filter(pl.col("suppressed"))
    assert suppressed.height == kpis.height - 1
    assert all(suppressed[c].null_count() == suppressed.height for c in figures)
    cell = kpis.filter(~pl.col("suppressed")).row(0, named=True)
    assert (cell["department"], cell["discharge_month"]) == ("93", date(2023, 6, 1))
    # 12 patients (>= 10): 15 index stays, published; but its 3 readmitted patients are a small
    # cell, so the readmission figures are masked (the Wilson bounds are checked by dbt unit tests).
    assert (cell["patients"], cell["index_stays"]) == (12, 15)
    assert cell["readmissions_masked"] is True
    assert cell["readmissions"] is None
    assert cell["readmission_rate"] is None
    assert cell["readmission_rate_ci_low"] is None
    assert cell["total_cost"] == pytest.approx(sum(1000.0 + 100 * i for i in range(12)) + 3 * 3000.0)
    # Every suppressed cell really has fewer than 10 patients.
    ours = recompute_readmissions(built["tables"]["stays"], WarehouseParams(), built["tables"]["diagnoses"])
    ours = ours.filter(pl.col("is_index"))
    small = (
        ours.join(built["tables"]["stays"].select("stay_id", "patient_id"), on="stay_id")
        .join(read_marts(built["paths"].warehouse,
                         "select stay_id, department, episode_discharge_date from marts.fct_readmissions"),
              on="stay_id")
        .group_by("department", pl.col("episode_discharge_date").dt.truncate("1mo").alias("discharge_month"))
        .agg(pl.col("patient_id").n_unique().alias("n"))
    )
    check = suppressed.join(small, on=["department", "discharge_month"])
    assert check.height == suppressed.height
    assert (check["n"] < 10).all()


def test_feature_mart_matches_the_contract(built: dict[str, Any]) -> None:
    path = built["paths"].features / FEATURES_FILE
    frame = pl.read_parquet(path)
    assert frame.schema == pl.Schema(contracts.FEATURE_SCHEMA)
    index_ids = dbt_labels(built).filter(pl.col("is_index"))["stay_id"]
    assert frame["stay_id"].to_list() == sorted(index_ids.to_list())
    assert frame["stay_id"].is_sorted()
    assert sorted(p.name for p in built["paths"].features.iterdir()) == [FEATURES_FILE]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    run_features(built["paths"], Params())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # deterministic bytes
    assert built["features"]["rows"] == frame.height


def test_features_known_at_discharge(built: dict[str, Any]) -> None:
    frame = pl.read_parquet(built["paths"].features / FEATURES_FILE)
    by_id = {r["stay_id"]: r for r in frame.iter_rows(named=True)}
    tags = built["tags"]

    chain = by_id[tags["chain_1"]]  # 3-stay chain, ED entry, associated codes on every stay
    assert chain["length_of_stay"] == 11
    assert chain["stay_cost"] == pytest.approx(9000.0)
    assert chain["discharge_date"] == date(2023, 5, 12)
    assert chain["charlson_score"] == 12  # E112 2 + C787 6 + K766 3 + I252 1 (milder levels dropped)
    assert chain["lace_score"] == 5 + 3 + 5 + 0
    assert chain["hospital_category"] == "ESPIC"  # the LAST stay's hospital
    assert chain["emergency_admission"] == 1
    assert chain["diagnosis_group"] == "HEART_FAILURE"

    hist = by_id[tags["history"]]
    assert (hist["prior_stays_6m"], hist["prior_stays_12m"]) == (1, 2)
    assert (hist["prior_emergency_6m"], hist["prior_emergency_12m"]) == (1, 1)
    assert hist["days_since_last_discharge"] == 50  # the planned session 50 days before
    assert hist["prior_atc_classes_90d"] == 2  # R03A, R03B; not the day of admission nor after
    assert hist["charlson_score"] == 4
    assert hist["lace_score"] == 5 + 3 + 5 + 1
    assert hist["hospital_category"] == "Private clinic"
    assert hist["deprivation_rate"] == pytest.approx(15.4)

    assert by_id[tags["ssr"]]["discharge_destination"] == "transfer_ssr"
    assert by_id[tags["act_1"]]["discharge_destination"] == "home"
    assert by_id[tags["readmit_a"]]["days_since_last_discharge"] is None
    cell93 = frame.filter(pl.col("department") == "93")
    assert (cell93["deprivation_rate"] == 27.6).all()
    assert frame.filter(pl.col("stay_id") == tags["quarantined"])["sex"].to_list() == [2]


def test_dim_patients_keeps_quarantined_beneficiaries(built: dict[str, Any]) -> None:
    dim = read_marts(built["paths"].warehouse, "select * from marts.dim_patients")
    assert dim.height == built["tables"]["stays"]["patient_id"].n_unique()
    row = dim.filter(pl.col("patient_id") == "P_QUARANTINED").row(0, named=True)
    assert row["has_beneficiary_record"] is False
    assert (row["sex"], row["department"]) == (2, "94")


def test_figures(built: dict[str, Any]) -> None:
    fig = built["figures"]
    ours = recompute_readmissions(built["tables"]["stays"], WarehouseParams(), built["tables"]["diagnoses"])
    ours = ours.filter(pl.col("is_index"))
    assert fig["index_stays"] == ours.height
    assert fig["readmissions"] == ours["readmitted_30d"].sum()
    assert fig["feature_rows"] == ours.height
    assert fig["kpi_cells"]["published"] == 1
    assert sum(fig["top_decile_cost"]["cost_share_by_group"].values()) == pytest.approx(1.0, abs=1e-3)
    assert fig["dbt"]["build_wall_seconds"] > 0
    assert "error" not in fig["dbt"]["node_statuses"]
    assert "fail" not in fig["dbt"]["node_statuses"]
    # The unit tests of the readmission rules ran inside the build.
    assert fig["dbt"]["node_statuses"]["pass"] >= 18


# ---------------------------------------------------------------------------------------------
# Failures


def test_failing_test_raises_with_the_node_named(tmp_path: Path) -> None:
    tables, _, _ = cf.build_clean()
    stays = tables["stays"]
    tables["stays"] = stays.with_columns(
        stay_cost=pl.when(pl.int_range(pl.len()) == 0).then(-5.0).otherwise(pl.col("stay_cost"))
    )
    paths = new_project(tmp_path, tables)
    with pytest.raises(WarehouseError) as info:
        run_warehouse(paths, Params())
    message = str(info.value)
    assert "non_negative_stg_stays_stay_cost" in message
    assert any("non_negative_stg_stays_stay_cost" in f["node"] for f in info.value.failures)


def test_missing_clean_tables_are_reported(tmp_path: Path) -> None:
    cf.write_clean(tmp_path / "data" / "clean", {"stays": cf.build_clean()[0]["stays"]})
    with pytest.raises(WarehouseError, match=r"patients\.parquet, hospitals\.parquet"):
        check_clean_inputs(Paths(tmp_path))


# ---------------------------------------------------------------------------------------------
# The same recomputation on simulated data: planned procedures, unrelated returns, same-day
# returns and discharges against medical advice all occur; the truth tells why each return happened.


@pytest.fixture(scope="module")
def simulated(small_project: Path) -> dict[str, Any]:
    """The session's small project (tests/conftest.py): generate -> clean -> warehouse at the default
    dirt rates, built once for this module and the report layer instead of once more here. Read-only."""
    from tests.support import report_fixtures as rfx

    paths = Paths(small_project)
    clean = {t: pl.read_parquet(paths.clean / f"{t}.parquet") for t in ("stays", "diagnoses")}
    truth = pl.read_parquet(paths.truth / contracts.TRUTH_STAYS_FILE)
    return {"paths": paths, "clean": clean, "truth": truth, "params": rfx.small_params()}


def test_simulated_flags_match_the_independent_recomputation(simulated: dict[str, Any]) -> None:
    clean = simulated["clean"]
    wp = simulated["params"].warehouse
    theirs = read_marts(simulated["paths"].warehouse, f"select {', '.join(LABEL_COLUMNS)} from marts.fct_readmissions")
    # the stays the analyses use: clean ones minus what the standard PMSI filters drop in staging
    kept = read_marts(simulated["paths"].warehouse, "select stay_id from staging.stg_stays")
    ours = recompute_readmissions(clean["stays"].join(kept, on="stay_id", how="semi"), wp, clean["diagnoses"])
    assert kept.height < clean["stays"].height  # the filters did drop some
    theirs = theirs.with_columns(
        pl.col("readmitted_30d").cast(pl.Int32), pl.col("days_to_readmission").cast(pl.Int64)
    ).sort("stay_id")
    assert_frame_equal(theirs, ours.with_columns(pl.col("days_to_readmission").cast(pl.Int64)))
    reasons = dict(theirs["exclusion_reason"].value_counts().iter_rows())
    # every new rule is exercised by the simulated data
    for reason in ("planned_procedure", "against_medical_advice", "same_day_return", "planned_care", "transfer"):
        assert reasons.get(reason, 0) > 0, reason
    assert theirs.filter(pl.col("days_to_readmission") == 0).height > 0


def test_simulated_labels_agree_with_the_truth(simulated: dict[str, Any]) -> None:
    """The mart's label is the truth's (a return for the planted readmission or an unrelated one,
    never a planned procedure), except where dirt removed a stay: a definition error would show
    as thousands of disagreements, noise as a handful."""
    marts = read_marts(simulated["paths"].warehouse,
                       "select stay_id, readmitted_30d, days_to_readmission from marts.fct_readmissions where is_index")
    truth = simulated["truth"]
    joined = marts.join(truth, on="stay_id", how="inner")
    assert joined.height > 0.99 * marts.height
    agree = (joined["readmitted_30d"] == joined["readmitted_30d_right"].cast(pl.Int32))
    assert agree.mean() > 0.995
    returned = joined.filter(pl.col("readmitted_30d") == 1)
    assert set(returned["return_reason"].drop_nulls().unique()) == {"readmission", "unrelated"}
    # the delay the mart sees is the truth's for nearly every return
    same_delay = returned.filter(pl.col("return_days").is_not_null())
    assert (same_delay["days_to_readmission"] == same_delay["return_days"]).mean() > 0.99
    # planned procedures inside the window never make a label on their own
    planned_only = joined.filter(pl.col("planned_return_days").is_between(0, 30) & pl.col("return_reason").is_null())
    assert planned_only.height > 0
    assert (planned_only["readmitted_30d"] == 0).mean() > 0.99
