"""The simulator: SNDS shape, determinism, realism and the planted effects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.config import Params, Paths, ReturnParams
from pipelines.contracts import (
    CORRUPTION_KINDS,
    RAW_SEPARATOR,
    RAW_TABLES,
    TRUTH_CORRUPTION_COLUMNS,
    TRUTH_CORRUPTIONS_FILE,
    TRUTH_STAY_COLUMNS,
    TRUTH_STAYS_FILE,
)
from pipelines.generate import run_generate
from pipelines.generate.episodes import delay_weights
from pipelines.snds.discover import classify
from pipelines.snds.ingest import Extract, ingest_table


def small_params(patients: int = 4000, seed: int = 7, **dirt: float) -> Params:
    data = Params().model_dump()
    data["seed"] = seed
    data["generate"]["patients"] = patients
    data["generate"]["chunk_patients"] = 1500
    data["generate"]["dirt"].update(dirt)
    return Params.model_validate(data)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    run_generate(Paths(root), small_params(), progress=False)
    return root


def _raw(root: Path, table: str) -> pl.DataFrame:
    """The logical raw table (SNDS files stacked and joined by the snds toolkit), all text."""
    return ingest_table(Extract.open(root / "data" / "raw"), table).rows


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_raw_files_have_snds_layout_headers_and_dates(generated: Path) -> None:
    files = sorted(p.name for p in (generated / "data" / "raw").iterdir())
    expected = {"IR_BEN_R.csv", "BE_IDE_R.csv", "EXT_FINESS_SAE.csv", "ER_PRS_F.csv", "ER_PHA_F.csv", "IR_PHA_R.csv"}
    expected |= {f"T_MCO{yy}{t}.csv" for yy in ("21", "22", "23", "24") for t in ("B", "C", "D", "VALO")}
    assert expected <= set(files)
    for name in files:
        found = classify(generated / "data" / "raw" / name)
        assert found is not None, name
        header = (generated / "data" / "raw" / name).read_text(encoding="utf-8").split("\n", 1)[0]
        assert header.split(RAW_SEPARATOR) == list(found.source.columns), name
    c = pl.read_csv(generated / "data" / "raw" / "T_MCO22C.csv", separator=";", infer_schema=False,
                    truncate_ragged_lines=True)
    # SAS datetimes, as the schema types T_MCOaaC dates
    assert c["EXE_SOI_DTD"].str.contains(r"^\d{2}[A-Z]{3}\d{4}:00:00:00$").mean() > 0.99  # type: ignore[operator]
    stays = _raw(generated, "stays")
    assert stays["ETA_NUM"].str.len_chars().eq(9).all()


def test_rsa_num_restarts_every_pmsi_year(generated: Path) -> None:
    stays = _raw(generated, "stays").filter(~pl.col("_malformed"))
    firsts = stays.group_by("PMSI_YEAR", "ETA_NUM").agg(pl.col("RSA_NUM").min())
    assert (firsts["RSA_NUM"] == "0000000001").mean() > 0.95  # type: ignore[operator]
    # the same (ETA_NUM, RSA_NUM) appears in several years: only the year tells the stays apart
    per_key = stays.group_by("ETA_NUM", "RSA_NUM").agg(pl.col("PMSI_YEAR").n_unique())
    assert per_key["PMSI_YEAR"].max() >= 4  # type: ignore[operator]
    sessions = stays.filter(pl.col("DGN_PAL").str.starts_with("Z49"))
    assert sessions.height > 0
    assert (sessions["SEJ_NBJ"] == "").all()


def test_same_seed_same_bytes_and_other_seed_differs(generated: Path, tmp_path: Path) -> None:
    run_generate(Paths(tmp_path), small_params(), progress=False)
    assert _digest(tmp_path / "data" / "raw") == _digest(generated / "data" / "raw")
    assert _digest(tmp_path / "data" / "truth") == _digest(generated / "data" / "truth")
    other = tmp_path / "other"
    run_generate(Paths(other), small_params(seed=8), progress=False)
    assert _digest(other / "data" / "raw") != _digest(generated / "data" / "raw")


def test_scale_multiplies_the_population(tmp_path: Path) -> None:
    params = small_params(patients=1000)
    doubled = params.model_copy(update={"generate": params.generate.model_copy(update={"scale": 2.0})})
    a = run_generate(Paths(tmp_path / "a"), params, progress=False)["rows"]
    b = run_generate(Paths(tmp_path / "b"), doubled, progress=False)["rows"]
    def stays(rows: dict[str, int]) -> int:
        return sum(n for name, n in rows.items() if name.startswith("T_MCO") and name.endswith("B.csv"))

    assert 1.8 < b["IR_BEN_R.csv"] / a["IR_BEN_R.csv"] < 2.2
    assert 1.7 < stays(b) / stays(a) < 2.3
    assert b["BE_IDE_R.csv"] == a["BE_IDE_R.csv"]


def test_truth_files_match_their_contracts(generated: Path) -> None:
    truth = pl.read_parquet(generated / "data" / "truth" / TRUTH_STAYS_FILE)
    assert dict(truth.schema) == TRUTH_STAY_COLUMNS
    assert truth["stay_id"].is_unique().all()
    unplanned = truth.filter(~pl.col("planned"))
    assert unplanned["true_probability"].is_between(0, 1).all()
    assert truth.filter(pl.col("planned"))["true_probability"].is_null().all()
    log = pl.read_parquet(generated / "data" / "truth" / TRUTH_CORRUPTIONS_FILE)
    assert dict(log.schema) == TRUTH_CORRUPTION_COLUMNS
    assert set(log["kind"].unique()) <= set(CORRUPTION_KINDS)


def test_every_logged_corruption_points_at_a_raw_row(generated: Path) -> None:
    log = pl.read_parquet(generated / "data" / "truth" / TRUTH_CORRUPTIONS_FILE)
    for table, spec in RAW_TABLES.items():
        raw = _raw(generated, table)
        keys = set(raw.select(pl.concat_str(list(spec.key), separator="|")).to_series().to_list())
        if table == "stays":  # a malformed B line keeps its fields: its key is still readable
            assert raw["_malformed"].any()
        logged = log.filter(pl.col("table") == table)
        assert set(logged["row_key"].to_list()) <= keys, table
        for row in logged.filter(pl.col("column") != "").iter_rows(named=True):
            assert row["raw_value"] != row["original_value"], row


def test_dirt_rates_are_params(tmp_path: Path) -> None:
    zero = dict.fromkeys(Params().generate.dirt.model_dump(), 0.0)
    run_generate(Paths(tmp_path), small_params(patients=800, **zero), progress=False)
    assert pl.read_parquet(tmp_path / "data" / "truth" / TRUTH_CORRUPTIONS_FILE).height == 0


def test_population_is_realistic(generated: Path) -> None:
    stays = _raw(generated, "stays").with_columns(age=pl.col("AGE_ANN").cast(pl.Int32, strict=False))
    share_65 = stays.filter(pl.col("age").is_between(0, 115))["age"].ge(65).mean()
    assert 0.28 < share_65 < 0.48  # type: ignore[operator]
    assert stays["ENT_PRV"].eq("5").mean() > 0.25  # type: ignore[operator]
    assert stays["SOR_MOD"].eq("9").sum() > 0
    assert stays["SOR_MOD"].eq("7").sum() > 0
    assert stays["DGN_PAL"].str.to_uppercase().str.starts_with("Z511").sum() > 0
    patients = _raw(generated, "patients")
    departments = patients["BEN_RES_DPT"].str.strip_chars().str.slice(0, 3).str.strip_chars_start("0")
    assert set(departments.str.slice(0, 2).unique()) == {"75", "77", "78", "91", "92", "93", "94", "95"}


def test_deaths_are_final(generated: Path) -> None:
    """No stay starts after the patient's recorded death date."""
    patients = _raw(generated, "patients").filter(pl.col("BEN_DCD_DTE") != "")
    deaths = patients.select(pl.col("BEN_NIR_PSA").alias("NIR_ANO_17"), pl.col("BEN_DCD_DTE__date").alias("death"))
    stays = _raw(generated, "stays").with_columns(adm=pl.col("EXE_SOI_DTD__date"))
    late = stays.join(deaths, on="NIR_ANO_17").filter(pl.col("adm") > pl.col("death"))
    assert late.height == 0
    assert deaths.height > 0


def test_planted_effects_hold_in_the_truth(generated: Path) -> None:
    """Older and costlier stays carry a higher true readmission probability; 93 is above average."""
    stays = _raw(generated, "stays").with_columns(
        stay_id=pl.concat_str(["ETA_NUM", pl.lit("-"), "PMSI_YEAR", pl.lit("-"),
                               pl.col("RSA_NUM").cast(pl.Int64, strict=False).cast(pl.String)]),
        age=pl.col("AGE_ANN").cast(pl.Int32, strict=False),
        cost=pl.col("MNT_TOT_AM").str.replace(",", ".").cast(pl.Float64, strict=False),
    )
    truth = pl.read_parquet(generated / "data" / "truth" / TRUTH_STAYS_FILE)
    episodes = stays.join(truth, on="stay_id").filter(
        ~pl.col("planned"), pl.col("stay_id") == pl.col("episode_id"), pl.col("true_probability") > 0
    )
    # The planted model itself (readmission_probability); true_probability adds unrelated returns.
    risk = "readmission_probability"
    older = episodes.filter(pl.col("age") >= 75)[risk].mean()
    younger = episodes.filter(pl.col("age").is_between(18, 50))[risk].mean()
    assert older > 1.5 * younger  # type: ignore[operator]
    q = episodes["cost"].quantile(0.5)
    costly = episodes.filter(pl.col("cost") > q)[risk].mean()
    cheap = episodes.filter(pl.col("cost") <= q)[risk].mean()
    assert costly > 1.3 * cheap  # type: ignore[operator]
    adults = episodes.filter(pl.col("age") >= 18)
    rate_93 = adults.filter(pl.col("BDI_DEP") == "93")[risk].mean()
    assert rate_93 > 1.08 * adults[risk].mean()  # type: ignore[operator]
    # A return's probability is at least the readmission's: unrelated returns only add to it.
    assert (episodes["true_probability"] >= episodes[risk] - 1e-12).all()
    # The draw follows the probability: observed rate within 2 points of the mean probability.
    assert abs(adults["readmitted_30d"].mean() - adults["true_probability"].mean()) < 0.02  # type: ignore[operator]


def test_readmission_delay_weights_are_smooth() -> None:
    """No pile at day 30: the weights decay geometrically from day 1 to day 30; day 0 only after a
    home discharge, days 0-1 never after rehabilitation (they would chain as a transfer)."""
    ret = ReturnParams(delay_decay_days=12.0, same_day_weight=0.3)
    home, rehab = delay_weights(ret, home=True), delay_weights(ret, home=False)
    assert home.sum() == pytest.approx(1.0)
    assert rehab.sum() == pytest.approx(1.0)
    assert home[0] == pytest.approx(0.3 * home[1])
    assert (rehab[:2] == 0).all()
    assert np.allclose(home[2:] / home[1:-1], np.exp(-1 / 12))  # every next day is exp(-1/12) as likely
    assert home[30] / home[29] == pytest.approx(np.exp(-1 / 12))
    assert home[30] == pytest.approx(np.exp(-29 / 12) * home[1])


def test_truth_says_why_each_return_happened(generated: Path) -> None:
    truth = pl.read_parquet(generated / "data" / "truth" / TRUTH_STAYS_FILE)
    kinds = dict(truth["stay_kind"].value_counts().iter_rows())
    assert set(kinds) == {"unplanned", "transfer", "same_day_return", "planned_procedure", "planned_session"}
    assert kinds["same_day_return"] > 10
    assert kinds["planned_procedure"] > 50
    first = truth.filter(pl.col("stay_kind") == "unplanned")
    # a return inside the window has a reason and a delay, and only then
    assert (first["readmitted_30d"] == first["return_reason"].is_not_null()).all()
    assert (first["readmitted_30d"] == first["return_days"].is_not_null()).all()
    reasons = dict(first["return_reason"].drop_nulls().value_counts().iter_rows())
    assert set(reasons) == {"readmission", "unrelated"}
    assert reasons["unrelated"] > 0.2 * reasons["readmission"]  # background returns are common
    returned = first.filter(pl.col("readmitted_30d"))
    assert returned["return_days"].is_between(0, 30).all()
    # day 0 happens (home discharges only), and day 30 is no pile: about as many as days 26-29
    days = dict(returned["return_days"].value_counts().iter_rows())
    assert days.get(0, 0) > 0
    tail = np.mean([days.get(k, 0) for k in (26, 27, 28, 29)])
    assert days.get(30, 0) < 1.6 * tail + 5
    assert np.mean([days.get(k, 0) for k in range(1, 6)]) > 1.5 * tail  # earlier days more likely
    # planned procedures are recorded on the index they were scheduled at, within or beyond 30 days
    planned = first["planned_return_days"].drop_nulls()
    assert planned.min() >= 7
    assert (planned <= 30).sum() > 0
    assert (planned > 30).sum() > 0
    assert 0.002 < first["against_medical_advice"].mean() < 0.05  # type: ignore[operator]
    # planned care carries no probability, unplanned episodes one that covers the planted readmission
    assert truth.filter(pl.col("planned"))["true_probability"].is_null().all()


def test_against_medical_advice_is_coded_z532_on_home_discharges(generated: Path) -> None:
    truth = pl.read_parquet(generated / "data" / "truth" / TRUTH_STAYS_FILE)
    stays = _raw(generated, "stays").with_columns(
        stay_id=pl.concat_str(["ETA_NUM", pl.lit("-"), "PMSI_YEAR", pl.lit("-"),
                               pl.col("RSA_NUM").cast(pl.Int64, strict=False).cast(pl.String)]))
    diagnoses = _raw(generated, "diagnoses").with_columns(
        stay_id=pl.concat_str(["ETA_NUM", pl.lit("-"), "PMSI_YEAR", pl.lit("-"),
                               pl.col("RSA_NUM").cast(pl.Int64, strict=False).cast(pl.String)]))
    z532 = set(diagnoses.filter(pl.col("ASS_DGN") == "Z532")["stay_id"].to_list())
    ama = truth.filter(pl.col("against_medical_advice"))
    # the last stay of each such episode carries Z532 and is a home discharge (SOR_MOD 8)
    last = ama.join(stays.select("stay_id", "SOR_MOD"), on="stay_id").filter(pl.col("stay_id").is_in(list(z532)))
    assert last.height > 0.9 * ama["episode_id"].n_unique()
    assert (last["SOR_MOD"] == "8").all()
