"""Acceptance: an extract in the official SNDS layout goes through clean -> warehouse -> features.

The extract (tests/data/snds_extract.py) is not the simulator's output: four yearly PMSI table
sets with RSA_NUM restarting, SAS datetimes, ',' quoted files, Latin-1, extra columns, codes
-1/0/9, '+' ICD-10 extensions, sessions with an empty SEJ_NBJ and the three PMSI filter cases.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines.clean import run_clean
from pipelines.config import Params, Paths
from pipelines.features import run_features
from pipelines.warehouse import run_warehouse
from tests.data.snds_extract import Written, build_extract

PROJECT_DBT = Path(__file__).resolve().parents[2] / "dbt"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, Written, dict[str, Any], dict[str, Any]]:
    root = tmp_path_factory.mktemp("extract")
    shutil.copytree(PROJECT_DBT, root / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    paths = Paths(root)
    written = build_extract(paths.raw)
    params = Params()
    cleaning = run_clean(paths, params.clean)  # default ceiling: nothing should come near it
    figures = run_warehouse(paths, params)  # raises on any failing dbt test
    return paths, written, cleaning, figures


def test_every_raw_row_is_accounted_for_per_file(run: tuple[Paths, Written, dict[str, Any], dict[str, Any]]) -> None:
    paths, _, cleaning, _ = run
    seen = set()
    for table in cleaning["tables"].values():
        for name, f in table["files"].items():
            lines = (paths.raw / name).read_bytes().rstrip(b"\r\n").count(b"\n")
            assert f["raw_rows"] == lines, name
            assert f["raw_rows"] == f["clean_rows"] + f["quarantined_rows"] + f["duplicates_dropped"], name
            seen.add(name)
    assert seen == {p.name for p in paths.raw.iterdir()}


def test_no_stay_lost_to_key_collisions(run: tuple[Paths, Written, dict[str, Any], dict[str, Any]]) -> None:
    paths, written, cleaning, _ = run
    stays = cleaning["tables"]["stays"]
    assert sorted(written.stays_per_year) == [2021, 2022, 2023, 2024]
    assert stays["clean_rows"] == sum(written.stays_per_year.values())
    assert stays["quarantined_rows"] == 0
    assert stays["linked_rows_rejected"] == 0
    clean = pl.read_parquet(paths.clean / "stays.parquet")
    assert clean.select("hospital_id", "rsa_num").is_duplicated().any()  # RSA_NUM restarts every year
    assert clean["stay_id"].is_unique().all()
    assert cleaning["tables"]["patients"]["clean_rows"] == written.patients
    assert cleaning["tables"]["dispensings"]["clean_rows"] == written.dispensings


def test_real_conventions_are_mapped(run: tuple[Paths, Written, dict[str, Any], dict[str, Any]]) -> None:
    paths, _, cleaning, _ = run
    stays = pl.read_parquet(paths.clean / "stays.parquet")
    sessions = stays.filter(pl.col("icd10_code") == "Z491")
    assert sessions.height > 0
    assert (sessions["length_of_stay"] == 0).all()
    assert "-1" in stays["discharge_mode"].to_list()
    assert {"9", "0"} <= set(stays["entry_source"].drop_nulls().to_list())
    assert "R53+0" in stays["icd10_code"].to_list()
    assert set(stays["sex"].unique().to_list()) <= {1, 2, 9}
    assert 9 in pl.read_parquet(paths.clean / "patients.parquet")["sex"].to_list()
    hospitals = pl.read_parquet(paths.clean / "hospitals.parquet")
    assert "HÔPITAL SAINT-ÉLOI" in hospitals["hospital_name"].to_list()
    assert "Other" in hospitals["category"].to_list()
    assert pl.read_parquet(paths.clean / "dispensings.parquet")["amount"].to_list()[0] == 12.5
    files = cleaning["tables"]["stays"]["files"]
    assert files["T_MCO22B.csv"]["format"]["separator"] == ","
    assert files["T_MCO22B.csv"]["format"]["quoted"]
    assert files["T_MCO21C.csv"]["format"]["date_formats"]["EXE_SOI_DTD"] == "sas_datetime"
    assert files["T_MCO24C.csv"]["format"]["date_formats"]["EXE_SOI_DTD"] == "ddmmyyyy"
    assert "t_mco23b.txt" in files
    assert cleaning["tables"]["hospitals"]["files"]["be_ide_r.txt"]["format"]["encoding"] == "cp1252"


def test_pmsi_filters_are_applied_in_staging(run: tuple[Paths, Written, dict[str, Any], dict[str, Any]]) -> None:
    paths, written, _, _ = run
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        excluded = dict(con.execute(f"select pmsi_filter, stay_id from {_rel(con, 'stg_pmsi_exclusions')}").fetchall())
        staged = {r[0] for r in con.execute(f"select stay_id from {_rel(con, 'stg_stays')}").fetchall()}
    assert set(excluded) == {"error_ghm", "control_codes", "geographic_finess"}
    assert run[3]["pmsi_filtered_stays"] == {"control_codes": 1, "error_ghm": 1, "geographic_finess": 1}
    for stay_id in excluded.values():
        assert stay_id not in staged
    assert {written.filtered[k] for k in excluded} == set(excluded.values())


def test_features_come_out(run: tuple[Paths, Written, dict[str, Any], dict[str, Any]]) -> None:
    paths, _, _, figures = run
    assert "error" not in figures["dbt"]["node_statuses"]
    assert "fail" not in figures["dbt"]["node_statuses"]
    out = run_features(paths, Params())
    assert out["rows"] >= 10
    assert pl.read_parquet(out["path"])["stay_id"].is_unique().all()


def _rel(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("select table_schema from information_schema.tables where table_name = ?", [name]).fetchone()
    assert row is not None, name
    return f"{row[0]}.{name}"


def test_without_optional_tables_the_chain_degrades_with_messages(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_DBT, tmp_path / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    paths = Paths(tmp_path)
    build_extract(paths.raw)
    for name in ["T_MCO21VALO.csv", "T_MCO22VALO.csv", "T_MCO23VALO.csv", "T_MCO24VALO.csv",
                 "EXT_FINESS_SAE.csv", "IR_PHA_R.csv"]:
        (paths.raw / name).unlink()
    params = Params()
    cleaning = run_clean(paths, params.clean)
    notes = [n for t in cleaning["tables"].values() for n in t["notes"]]
    assert any(n.startswith("T_MCOaaVALO for 2021, 2022, 2023, 2024 not in the extract (columns ETA_NUM, RSA_NUM,"
                            " MNT_TOT_AM): stay_cost null") for n in notes)
    assert any(n.startswith("EXT_FINESS_SAE not in the extract") for n in notes)
    figures = run_warehouse(paths, params)  # cost tests warn instead of failing
    assert "test.snds_readmission.not_null_stg_stays_stay_cost.060d5985fb" in figures["dbt"]["warnings"]
    assert run_features(paths, params)["rows"] >= 10
