"""Planned sessions (chemotherapy, radiotherapy, dialysis) and pharmacy dispensings."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.generate import catalog
from pipelines.generate.population import Hospitals, IntArray, Patients


def _schedule(
    rng: np.random.Generator, who: IntArray, first_day: IntArray, count: IntArray,
    every: float, jitter: int,
) -> tuple[IntArray, IntArray]:
    """Repeated dates: patient index and day of each session."""
    rows = np.repeat(who, count)
    k = np.concatenate([np.arange(c) for c in count]) if count.size else np.array([], dtype=np.int64)
    days = np.repeat(first_day, count) + np.round(k * every).astype(np.int64)
    days = days + rng.integers(-jitter, jitter + 1, days.size)
    return rows.astype(np.int64), days.astype(np.int64)


def simulate_sessions(
    pat: Patients,
    hosp: Hospitals,
    unplanned: pl.DataFrame,
    death_day: IntArray,
    rng: np.random.Generator,
    n_days: int,
) -> pl.DataFrame:
    """Planned sessions, none overlapping an unplanned stay (+-1 day) nor after death."""
    n = pat.patient_id.size
    cancer = np.flatnonzero((pat.chronic == "CANCER") & pat.has_stays)
    ckd = np.flatnonzero((pat.chronic == "CKD") & pat.has_stays)
    chemo = cancer[rng.random(cancer.size) < 0.7]
    radio = cancer[rng.random(cancer.size) < 0.2]
    dialysis = ckd[rng.random(ckd.size) < 0.12]
    parts = []
    for kind, who, count, every, jitter in (
        ("chemotherapy", chemo, rng.integers(4, 9, chemo.size), 21.0, 2),
        ("radiotherapy", radio, np.full(radio.size, 15), 1.4, 0),
        ("dialysis", dialysis, rng.integers(50, 105, dialysis.size), 3.5, 0),
    ):
        first = rng.integers(0, n_days, who.size)
        rows, days = _schedule(rng, who, first, count, every, jitter)
        code, ghm, mean_cost = catalog.PLANNED_SESSIONS[kind]
        parts.append(
            pl.DataFrame(
                {
                    "patient_idx": rows, "admission": days, "icd10": np.full(rows.size, code),
                    "ghm": np.full(rows.size, ghm),
                    "cost": mean_cost * rng.lognormal(0.0, 0.15, rows.size),
                },
                schema_overrides={"icd10": pl.String, "ghm": pl.String},
            )
        )
    sessions = pl.concat(parts).unique(["patient_idx", "admission"], keep="first", maintain_order=True)
    death = pl.DataFrame({"patient_idx": np.arange(n), "death_day": death_day})
    busy = unplanned.select("patient_idx", "admission", "discharge").rename(
        {"admission": "busy_from", "discharge": "busy_to"}
    )
    clashing = (
        sessions.join(busy, on="patient_idx")
        .filter(
            (pl.col("admission") >= pl.col("busy_from") - 1)
            & (pl.col("admission") <= pl.col("busy_to") + 1)
        )
        .select("patient_idx", "admission")
        .unique()
    )
    kept = (
        sessions.join(clashing, on=["patient_idx", "admission"], how="anti")
        .join(death, on="patient_idx")
        .filter(
            (pl.col("admission") >= 0)
            & (pl.col("admission") <= n_days)
            & ((pl.col("death_day") < 0) | (pl.col("admission") < pl.col("death_day")))
        )
        .drop("death_day")
        .sort("patient_idx", "admission")
    )
    dept_of = pat.department[kept["patient_idx"].to_numpy()]
    hospital = np.zeros(kept.height, dtype=np.int64)
    for dept in np.unique(dept_of):
        cand = np.flatnonzero((hosp.department == dept) & (hosp.category != "128") & ~hosp.opens_with_drift)
        rows = np.flatnonzero(dept_of == dept)
        hospital[rows] = cand[rng.integers(0, cand.size, rows.size)]
    return kept.with_columns(pl.Series("hospital_idx", hospital), discharge=pl.col("admission"))


def simulate_dispensings(
    pat: Patients, death_day: IntArray, rng: np.random.Generator, n_days: int
) -> pl.DataFrame:
    """Quarterly refills of chronic treatments and occasional prescriptions."""
    parts = []
    for name in catalog.CHRONIC:
        who = np.flatnonzero(pat.chronic == name)
        for atc, cip, price in catalog.DRUGS[name]:
            first = rng.integers(0, 90, who.size)
            count = (n_days - first) // 90 + 1
            rows, days = _schedule(rng, who, first, count, 90.0, 6)
            boxes = np.full(rows.size, 3)
            parts.append((rows, days, atc, cip, price, boxes))
    occasional = catalog.DRUGS["OCCASIONAL"]
    count = rng.poisson(1.2 * n_days / 365.0, pat.patient_id.size)
    who = np.repeat(np.arange(pat.patient_id.size), count)
    days = rng.integers(0, n_days + 1, who.size)
    pick = rng.integers(0, len(occasional), who.size)
    frames = [
        pl.DataFrame({"patient_idx": r, "day": d, "atc": np.full(r.size, a), "cip13": np.full(r.size, c),
                      "boxes": b, "price": np.full(r.size, p)},
                     schema_overrides={"atc": pl.String, "cip13": pl.String})
        for r, d, a, c, p, b in parts
    ]
    frames.append(
        pl.DataFrame(
            {
                "patient_idx": who, "day": days,
                "atc": np.array([occasional[i][0] for i in pick], dtype=str),
                "cip13": np.array([occasional[i][1] for i in pick], dtype=str),
                "boxes": rng.integers(1, 3, who.size),
                "price": np.array([occasional[i][2] for i in pick], dtype=float),
            },
            schema_overrides={"atc": pl.String, "cip13": pl.String},
        )
    )
    death = pl.DataFrame({"patient_idx": np.arange(pat.patient_id.size), "death_day": death_day})
    return (
        pl.concat(frames, how="vertical_relaxed")
        .join(death, on="patient_idx")
        .filter(
            (pl.col("day") >= 0) & (pl.col("day") <= n_days)
            & ((pl.col("death_day") < 0) | (pl.col("day") <= pl.col("death_day")))
        )
        .with_columns(amount=(pl.col("boxes") * pl.col("price") * 0.65).round(2))
        .drop("death_day", "price")
        .sort("patient_idx", "day", "atc")
    )
