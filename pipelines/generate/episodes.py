"""Unplanned hospital episodes, simulated patient by patient as a renewal process.

After each episode the simulator draws the 30-day readmission from the planted model
(`readmission_logit`). A readmission starts 1-30 days after discharge; otherwise the
patient's next unplanned episode comes more than 30 days later. So "followed by an
unplanned readmission" is exactly the Bernoulli draw, and its probability is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipelines.config import DriftParams, EffectParams
from pipelines.generate import catalog
from pipelines.generate.population import (
    BoolArray,
    FloatArray,
    Hospitals,
    IntArray,
    Patients,
    StrArray,
    charlson_from_mask,
)

COND_NAMES: tuple[str, ...] = tuple(catalog.CONDITIONS)
_BURN_IN_DAYS = 365
_HISTORY = 6  # admissions remembered per patient: enough for counts capped at 5
_TRANSFER_RATE = 0.05
_LISTING_RATE = 0.85  # chance a known comorbidity is coded on a given stay


def _cond_attr(name: str) -> FloatArray:
    return np.array([getattr(catalog.CONDITIONS[c], name) for c in COND_NAMES], dtype=float)


@dataclass
class _Columns:
    """Growing column lists, one entry per stay."""

    data: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **cols: np.ndarray) -> None:
        for key, value in cols.items():
            self.data.setdefault(key, []).append(value)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({k: np.concatenate(v) for k, v in self.data.items()})


def readmission_logit(
    eff: EffectParams,
    age: IntArray,
    cost: FloatArray,
    poverty: FloatArray,
    prior_12m: IntArray,
    emergency: BoolArray,
    charlson: IntArray,
    male: BoolArray,
    offset: FloatArray,
) -> FloatArray:
    """The planted readmission model: every input is observable at discharge."""
    return np.asarray(
        eff.intercept
        + eff.age_per_decade * (age - 65) / 10
        + eff.log_cost * np.log(np.maximum(cost, 50.0) / 4000.0)
        + eff.poverty_per_point * (poverty - catalog.REGION_POVERTY_RATE)
        + eff.prior_stay * np.minimum(prior_12m, 5)
        + eff.emergency * emergency
        + eff.charlson_point * np.minimum(charlson, 6)
        + eff.male * male
        + offset,
        dtype=np.float64,
    )


def _age_group(age: IntArray, sex: IntArray) -> StrArray:
    out = np.where(age < 18, "minor", np.where(age < 65, "18-64", np.where(age < 80, "65-79", "80+")))
    out = np.where((age >= 18) & (age < 45) & (sex == 2), "women 18-44", out)
    return np.asarray(out, dtype=str)


def _pick_conditions(
    rng: np.random.Generator, age: IntArray, sex: IntArray, chronic: StrArray,
    previous: IntArray, readmission: BoolArray,
) -> IntArray:
    n = age.size
    cond = np.zeros(n, dtype=np.int64)
    group = _age_group(age, sex)
    for label, mix in catalog.ACUTE_MIX.items():
        rows = np.flatnonzero(group == label)
        if rows.size:
            names = list(mix)
            p = np.array([mix[k] for k in names])
            picks = rng.choice(len(names), size=rows.size, p=p / p.sum())
            cond[rows] = [COND_NAMES.index(names[i]) for i in picks]
    u = rng.random(n)
    own = (chronic != "") & (u < 0.65)
    for name in catalog.CHRONIC:
        cond[own & (chronic == name)] = COND_NAMES.index(name)
    same = readmission & (previous >= 0) & (rng.random(n) < 0.6)
    cond[same] = previous[same]
    return cond


def _pick_codes(rng: np.random.Generator, cond: IntArray) -> StrArray:
    out = np.empty(cond.size, dtype=object)
    for ci, name in enumerate(COND_NAMES):
        rows = np.flatnonzero(cond == ci)
        if rows.size:
            codes = catalog.CONDITIONS[name].codes
            p = np.array([w for _, w in codes])
            out[rows] = np.array([c for c, _ in codes])[rng.choice(len(codes), rows.size, p=p / p.sum())]
    return out.astype(str)


def _pick_hospitals(
    rng: np.random.Generator, hosp: Hospitals, department: StrArray, teaching_only: BoolArray
) -> IntArray:
    """80% stay in their department (weighted by beds), the rest go to Paris.

    Hospitals flagged `opens_with_drift` only take patients through `_drift_hospital`.
    """
    n = department.size
    target = np.where(rng.random(n) < 0.8, department, "75")
    out = np.zeros(n, dtype=np.int64)
    for dept in np.unique(target):
        for teach in (False, True):
            rows = np.flatnonzero((target == dept) & (teaching_only == teach))
            if not rows.size:
                continue
            cand = np.flatnonzero((hosp.department == dept) & ~hosp.opens_with_drift)
            if teach:
                chu = cand[hosp.category[cand] == "101"]
                cand = chu if chu.size else np.flatnonzero(hosp.category == "101")
            w = hosp.beds[cand].astype(float)
            out[rows] = cand[rng.choice(cand.size, rows.size, p=w / w.sum())]
    return out


def _severity(los: IntArray, charlson: IntArray) -> StrArray:
    level = 1 + (los >= 3) + ((los >= 7) & (charlson >= 2)) + (los >= 14)
    return np.asarray(np.minimum(level, 4).astype(str), dtype=str)


def _day_years(days: IntArray, start: np.datetime64) -> IntArray:
    return np.asarray((start + days).astype("datetime64[Y]").astype(np.int64) + 1970)


def simulate_unplanned(
    pat: Patients,
    hosp: Hospitals,
    eff: EffectParams,
    rng: np.random.Generator,
    start: np.datetime64,
    n_days: int,
    drift: DriftParams | None = None,
) -> tuple[pl.DataFrame, IntArray, IntArray]:
    """All unplanned stays of these patients, plus each patient's death day and last discharge.

    Days count from `start`; a death day of -1 means alive at the data end. With `drift`
    enabled, admissions from its start date see the shifts it describes.
    """
    drift_day = n_days + 1
    if drift is not None and drift.enabled:
        drift_day = int((np.datetime64(drift.start_date.isoformat(), "D") - start).astype(int))
    new_hospital = np.flatnonzero(hosp.opens_with_drift)
    n = pat.patient_id.size
    never = np.iinfo(np.int64).max // 4
    # Episodes arrive as a renewal process started a year before the data (burn-in), so
    # stays are as frequent at the start of the data as at its end. Nothing before day 0 is
    # recorded or counted as history: the warehouse cannot see it either.
    first_adm = -_BURN_IN_DAYS + np.floor(rng.exponential(pat.mean_gap_days)).astype(np.int64)
    next_adm = np.where(pat.has_stays, first_adm, never)
    is_readmission = np.zeros(n, dtype=bool)
    previous = np.full(n, -1, dtype=np.int64)
    hist = np.full((n, _HISTORY), -(10**6), dtype=np.int64)
    death_day = np.full(n, -1, dtype=np.int64)
    last_discharge = np.full(n, -1, dtype=np.int64)
    poverty_by_dept = {d: v[2] for d, v in catalog.DEPARTMENTS.items()}
    poverty = np.array([poverty_by_dept[d] for d in pat.department])
    los_mean, cost_base, cost_day = _cond_attr("los_mean"), _cond_attr("cost_base"), _cond_attr("cost_per_day")
    emerg_rate, death_rate, ssr_rate = _cond_attr("emergency_rate"), _cond_attr("death_rate"), _cond_attr("ssr_rate")
    offset = _cond_attr("readmission_offset")
    ambulatory = np.isin(np.array(COND_NAMES), ["OTHER", "PEDIATRIC"])
    cols = _Columns()
    episode_seq = 0
    while True:
        act = np.flatnonzero((death_day < 0) & (next_adm <= n_days))
        if act.size == 0:
            break
        if drift is not None and drift_day <= n_days:
            # Older population: some younger patients' episodes no longer happen.
            adm, age = next_adm[act], _day_years(next_adm[act], start) - pat.birth_year[act]
            skip = (adm >= drift_day) & (age < 65) & (rng.random(act.size) < drift.older_population)
            gap = 31 + np.floor(rng.exponential(pat.mean_gap_days[act[skip]])).astype(np.int64)
            next_adm[act[skip]] = adm[skip] + gap
            is_readmission[act[skip]] = False
            act = act[~skip]
            if act.size == 0:
                continue
        m = act.size
        adm = next_adm[act]
        age = _day_years(adm, start) - pat.birth_year[act]
        drifted = adm >= drift_day
        readm = is_readmission[act]
        cond = _pick_conditions(rng, age, pat.sex[act], pat.chronic[act], previous[act], readm)
        emergency = rng.random(m) < np.where(readm, np.maximum(emerg_rate[cond], 0.8), emerg_rate[cond])
        age_factor = np.clip(1 + 0.01 * (age - 65), 0.7, 1.3)
        los1 = np.round(rng.gamma(2.0, los_mean[cond] * age_factor / 2.0)).astype(np.int64)
        los1 = np.maximum(los1, np.where(ambulatory[cond], 0, 1))
        h1 = _pick_hospitals(rng, hosp, pat.department[act], np.zeros(m, dtype=bool))
        if drift is not None and new_hospital.size:
            to_new = drifted & (pat.department[act] == "93") & (rng.random(m) < drift.new_hospital_share)
            h1[to_new] = new_hospital[0]
        noise1 = rng.lognormal(0.0, 0.25, m)
        cost1 = (cost_base[cond] + cost_day[cond] * los1) * hosp.cost_factor[h1] * noise1

        can_transfer = (age >= 18) & ~np.isin(cond, [COND_NAMES.index("OBSTETRICS")])
        transfer = can_transfer & (rng.random(m) < _TRANSFER_RATE)
        act_transfer = transfer & (rng.random(m) < 0.2)
        gap = rng.integers(0, 2, m)
        h2 = _pick_hospitals(rng, hosp, pat.department[act], np.ones(m, dtype=bool))
        los2 = np.maximum(1, np.round(rng.gamma(2.0, 2.5, m))).astype(np.int64)
        cost2 = (1500 + 450 * los2) * hosp.cost_factor[h2] * rng.lognormal(0.0, 0.25, m)
        dis1 = adm + los1
        adm2 = dis1 + gap
        dis2 = adm2 + los2
        discharge = np.where(transfer, dis2, dis1)
        episode_cost = cost1 + np.where(transfer, cost2, 0.0)

        listed = pat.comorbidity_mask[act] & _random_mask(rng, m, _LISTING_RATE)
        charlson = charlson_from_mask(listed)  # the risk follows the patient's real comorbidities
        inflation = np.ones(m)
        if drift is not None:
            # Coding change: an extra comorbidity coded, the patient no sicker.
            upcoded = drifted & (rng.random(m) < drift.coding_intensity)
            extra = rng.integers(0, len(catalog.COMORBIDITIES), m)
            listed = np.where(upcoded, listed | (1 << extra), listed)
            inflation = np.where(drifted, 1.0 + drift.cost_inflation, 1.0)
        prior_12m = (hist[act] >= adm[:, None] - 365).sum(axis=1)
        recorded = adm >= 0
        died = recorded & (rng.random(m) < np.clip(death_rate[cond] * np.exp(0.04 * (age - 65)), 0, 0.9))
        ssr = ~died & (rng.random(m) < np.where(age >= 65, ssr_rate[cond], ssr_rate[cond] * 0.3))
        logit = readmission_logit(
            eff, age, episode_cost, poverty[act], prior_12m, emergency, charlson,
            pat.sex[act] == 1, offset[cond],
        )
        # Tariffs rise after the risk is set: inflation shifts cost, not readmissions.
        cost1, cost2 = cost1 * inflation, cost2 * inflation
        prob = np.where(died, 0.0, 1.0 / (1.0 + np.exp(-logit)))
        readmitted = rng.random(m) < prob

        last_mode = np.where(died, "9", np.where(ssr, "7", "8"))
        last_dest = np.where(ssr, "2", "")
        first_mode = np.where(transfer, np.where(act_transfer, "0", "7"), last_mode)
        first_dest = np.where(transfer, "1", last_dest)
        codes = _pick_codes(rng, cond)
        ghm_root = np.array([catalog.CONDITIONS[c].ghm_root for c in COND_NAMES])[cond]
        episode_ids = np.arange(episode_seq, episode_seq + m)
        episode_seq += m
        common = {
            "patient_idx": act, "episode_seq": episode_ids, "age": age,
            "icd10": codes, "condition": np.array(COND_NAMES)[cond], "comorbidities": listed,
            "probability": prob, "readmitted": readmitted,
        }
        first_stay = {
            **common, "stay_in_episode": np.zeros(m, dtype=np.int64), "hospital_idx": h1,
            "admission": adm, "discharge": dis1, "cost": cost1,
            "ghm": np.char.add(ghm_root.astype(str), _severity(los1, charlson)),
            "entry_mode": np.full(m, "8"), "entry_source": np.where(emergency, "5", ""),
            "discharge_mode": first_mode, "discharge_destination": first_dest,
        }
        second_stay = {
            **common, "stay_in_episode": np.ones(m, dtype=np.int64), "hospital_idx": h2,
            "admission": adm2, "discharge": dis2, "cost": cost2,
            "ghm": np.char.add(ghm_root.astype(str), _severity(los2, charlson)),
            "entry_mode": np.where(act_transfer, "0", "7"), "entry_source": np.full(m, "1"),
            "discharge_mode": last_mode, "discharge_destination": last_dest,
        }
        rec = np.flatnonzero(recorded)
        cols.add(**{k: v[rec] for k, v in first_stay.items()})
        rec_t = np.flatnonzero(recorded & transfer)
        cols.add(**{k: v[rec_t] for k, v in second_stay.items()})

        # Remember this episode for the prior-stay counts of later ones.
        seen = act[recorded]
        slot = hist[seen].argmin(axis=1)
        hist[seen, slot] = adm[recorded]
        previous[act] = cond
        last_discharge[act] = discharge
        death_day[act[died]] = discharge[died]
        delay = 1 + np.minimum(29, np.floor(rng.exponential(9.0, m))).astype(np.int64)
        delay = np.where(ssr, np.maximum(delay, 2), delay)  # rehab first: no next-day chaining
        later = 31 + np.floor(rng.exponential(pat.mean_gap_days[act])).astype(np.int64)
        next_adm[act] = discharge + np.where(readmitted, delay, later)
        is_readmission[act] = readmitted
    stays = cols.frame() if cols.data else _empty_stays()
    return stays, death_day, last_discharge


def _random_mask(rng: np.random.Generator, n: int, rate: float) -> IntArray:
    bits = rng.random((n, len(catalog.COMORBIDITIES))) < rate
    return np.asarray((bits * (1 << np.arange(bits.shape[1]))).sum(axis=1), dtype=np.int64)


def _empty_stays() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "patient_idx": pl.Int64, "episode_seq": pl.Int64, "age": pl.Int64, "icd10": pl.String,
            "condition": pl.String, "comorbidities": pl.Int64, "probability": pl.Float64,
            "readmitted": pl.Boolean, "stay_in_episode": pl.Int64, "hospital_idx": pl.Int64,
            "admission": pl.Int64, "discharge": pl.Int64, "cost": pl.Float64, "ghm": pl.String,
            "entry_mode": pl.String, "entry_source": pl.String, "discharge_mode": pl.String,
            "discharge_destination": pl.String,
        }
    )
