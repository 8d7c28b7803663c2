"""Unplanned hospital episodes, simulated patient by patient as a renewal process.

After each episode the simulator draws the planted readmission (`readmission_logit`, with
non-linear terms and two unobserved patient traits) and, independently, the patient's next
unrelated unplanned admission at their background rate. The next episode is whichever comes
first: a readmission 0-30 days after discharge (a smooth, decreasing delay distribution; day 0
only after a home discharge), or an unrelated admission any day from the next one. The label
the definition must find is "an unplanned episode 0-30 days after discharge", whatever its
cause; its probability (`label_probability`) is the truth the Bayes oracle scores with.

Besides: same-day returns to the same hospital with the same diagnosis (one stay for the
definition, CMS-style), discharges against medical advice (SOR_MOD 8 + associated diagnosis
Z53.2) and elective procedures scheduled at discharge (planned readmissions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipelines.config import DriftParams, EffectParams, LatentParams, ReturnParams
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


CARDIORESPIRATORY = np.array([c in ("COPD", "HEART_FAILURE") for c in COND_NAMES])
CANCER_LIKE = np.array([c in ("CANCER", "DIABETES", "OTHER") for c in COND_NAMES])
ACUTE_AMBULATORY = np.array([c in ("OBSTETRICS", "PEDIATRIC") for c in COND_NAMES])


def readmission_logit(
    eff: EffectParams,
    *,
    age: IntArray,
    cost: FloatArray,
    poverty: FloatArray,
    prior_12m: IntArray,
    emergency: BoolArray,
    charlson: IntArray,
    male: BoolArray,
    offset: FloatArray,
    los: IntArray,
    since_discharge: IntArray,
    cond: IntArray,
    rehab: BoolArray,
    lives_alone: BoolArray,
    frailty: FloatArray,
    against_advice: BoolArray,
) -> FloatArray:
    """The planted readmission model (README "Planted effects").

    Observable at discharge: age, cost, poverty, prior episodes, ED entry, Charlson, sex, length
    of stay, days since the last unplanned discharge (-1: none), condition, rehabilitation.
    Unobserved: living alone, frailty.
    """
    decades = (age - 65) / 10
    short = (los <= eff.short_stay_days) & (age >= 18) & ~ACUTE_AMBULATORY[cond]
    return np.asarray(
        eff.intercept
        + eff.age_per_decade * decades
        + eff.log_cost * np.log(np.maximum(cost, 50.0) / 4000.0)
        + eff.poverty_per_point * (poverty - catalog.REGION_POVERTY_RATE)
        + eff.prior_stay * np.minimum(prior_12m, 5)
        + eff.prior_step * (prior_12m >= eff.prior_step_at)
        + eff.emergency * emergency
        + eff.charlson_point * np.minimum(charlson, 6)
        + eff.male * male
        + eff.short_stay * short
        + eff.recent_discharge * ((since_discharge >= 0) & (since_discharge <= eff.recent_discharge_days))
        + eff.age_cardiorespiratory_per_decade * decades * CARDIORESPIRATORY[cond]
        + eff.age_cancer_per_decade * decades * CANCER_LIKE[cond]
        + eff.rehab_discharge * rehab
        + eff.lives_alone_home * (lives_alone & ~rehab)
        + eff.frailty * frailty
        + eff.against_medical_advice * against_advice
        + offset,
        dtype=np.float64,
    )


def delay_weights(ret: ReturnParams, home: bool) -> FloatArray:
    """Probability of each readmission delay 0..30 days: exp(-(d - 1) / decay) from day 1, day 0
    `same_day_weight` times day 1's weight after a home discharge; after a transfer or a discharge
    to rehabilitation days 0 and 1 would be chained to the episode, so the delay starts at 2."""
    d = np.arange(31)
    w = np.exp(-(d - 1) / ret.delay_decay_days)
    w[0] = ret.same_day_weight * w[1] if home else 0.0
    if not home:
        w[1] = 0.0
    return np.asarray(w / w.sum(), dtype=np.float64)


def _draw_delay(rng: np.random.Generator, ret: ReturnParams, home: BoolArray) -> IntArray:
    u = rng.random(home.size)
    out = np.empty(home.size, dtype=np.int64)
    for flag in (True, False):
        cdf = np.cumsum(delay_weights(ret, flag))
        rows = home == flag
        out[rows] = np.minimum(np.searchsorted(cdf, u[rows], side="right"), 30)
    return out


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


def _other_hospital(
    rng: np.random.Generator, hosp: Hospitals, department: StrArray, avoid: IntArray
) -> IntArray:
    """A hospital of the patient's department (else any) other than `avoid`."""
    out = avoid.copy()
    usable = ~hosp.opens_with_drift
    for k in range(avoid.size):
        cand = np.flatnonzero(usable & (hosp.department == department[k]) & (np.arange(usable.size) != avoid[k]))
        if not cand.size:
            cand = np.flatnonzero(usable & (np.arange(usable.size) != avoid[k]))
        out[k] = cand[rng.integers(0, cand.size)]
    return out


def _planned_kind(cond: IntArray, codes: StrArray, ret: ReturnParams, u: FloatArray) -> StrArray:
    """The elective procedure scheduled at discharge, or ''."""
    names = np.array(COND_NAMES)[cond]
    kind = np.full(cond.size, "", dtype=object)
    kind[(names == "HEART_FAILURE") & (u < ret.planned_heart_failure)] = "angioplasty"
    kind[(names == "CANCER") & (u < ret.planned_cancer)] = "cancer_surgery"
    kind[(names == "OTHER") & (codes == "K802") & (u < ret.planned_gallstones)] = "cholecystectomy"
    return np.asarray(kind.astype(str), dtype=str)


def simulate_unplanned(
    pat: Patients,
    hosp: Hospitals,
    eff: EffectParams,
    rng: np.random.Generator,
    start: np.datetime64,
    n_days: int,
    drift: DriftParams | None = None,
    latent: LatentParams | None = None,
    ret: ReturnParams | None = None,
) -> tuple[pl.DataFrame, IntArray, IntArray]:
    """All unplanned stays of these patients and the planned procedures scheduled at their
    discharges, plus each patient's death day and last discharge.

    Days count from `start`; a death day of -1 means alive at the data end. With `drift`
    enabled, admissions from its start date see the shifts it describes.
    """
    latent = latent or LatentParams()
    ret = ret or ReturnParams()
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
    is_readmission = np.zeros(n, dtype=bool)  # the pending admission is the planted readmission
    same_day = np.zeros(n, dtype=bool)  # ... and comes back the day of a home discharge
    in_window = np.zeros(n, dtype=bool)  # the pending admission is 0-30 days after the last discharge
    previous = np.full(n, -1, dtype=np.int64)
    prev_hospital = np.full(n, -1, dtype=np.int64)
    prev_category = np.full(n, "", dtype=object)
    hist = np.full((n, _HISTORY), -(10**6), dtype=np.int64)
    death_day = np.full(n, -1, dtype=np.int64)
    last_discharge = np.full(n, -1, dtype=np.int64)
    discharged = np.zeros(n, dtype=bool)  # the patient had an unplanned discharge (burn-in included)
    poverty_by_dept = {d: v[2] for d, v in catalog.DEPARTMENTS.items()}
    poverty = np.array([poverty_by_dept[d] for d in pat.department])
    los_mean, cost_base, cost_day = _cond_attr("los_mean"), _cond_attr("cost_base"), _cond_attr("cost_per_day")
    emerg_rate, death_rate, ssr_rate = _cond_attr("emergency_rate"), _cond_attr("death_rate"), _cond_attr("ssr_rate")
    offset = _cond_attr("readmission_offset")
    ambulatory = np.isin(np.array(COND_NAMES), ["OTHER", "PEDIATRIC"])
    cols = _Columns()
    planned = _Columns()
    episode_seq = 0
    while True:
        act = np.flatnonzero((death_day < 0) & (next_adm <= n_days))
        if act.size == 0:
            break
        if drift is not None and drift_day <= n_days:
            # Older population: some younger patients' episodes no longer happen (never a return
            # inside the 30-day window, whose truth is already written).
            adm, age = next_adm[act], _day_years(next_adm[act], start) - pat.birth_year[act]
            skip = (adm >= drift_day) & (age < 65) & ~in_window[act] & (rng.random(act.size) < drift.older_population)
            gap = 1 + np.floor(rng.exponential(pat.mean_gap_days[act[skip]])).astype(np.int64)
            next_adm[act[skip]] = adm[skip] + gap
            is_readmission[act[skip]] = False
            same_day[act[skip]] = False
            act = act[~skip]
            if act.size == 0:
                continue
        m = act.size
        adm = next_adm[act]
        age = _day_years(adm, start) - pat.birth_year[act]
        drifted = adm >= drift_day
        readm = is_readmission[act]
        frail = pat.frailty[act]
        cond = _pick_conditions(rng, age, pat.sex[act], pat.chronic[act], previous[act], readm)
        codes = _pick_codes(rng, cond)
        category = np.array([c[:3] for c in codes], dtype=object)
        emergency = rng.random(m) < np.where(readm, np.maximum(emerg_rate[cond], 0.8), emerg_rate[cond])
        age_factor = np.clip(1 + 0.01 * (age - 65), 0.7, 1.3) * np.exp(latent.frailty_los * frail)
        los1 = np.round(rng.gamma(2.0, los_mean[cond] * age_factor / 2.0)).astype(np.int64)
        los1 = np.maximum(los1, np.where(ambulatory[cond], 0, 1))
        h1 = _pick_hospitals(rng, hosp, pat.department[act], np.zeros(m, dtype=bool))
        if drift is not None and new_hospital.size:
            to_new = drifted & (pat.department[act] == "93") & (rng.random(m) < drift.new_hospital_share)
            h1[to_new] = new_hospital[0]
        # A same-day readmission goes elsewhere or for another diagnosis: the same hospital and
        # the same diagnosis on the day of discharge is one stay continued (below), not a return.
        clash = np.flatnonzero(same_day[act] & (h1 == prev_hospital[act]) & (category == prev_category[act]))
        if clash.size:
            h1[clash] = _other_hospital(rng, hosp, pat.department[act[clash]], h1[clash])
        noise1 = rng.lognormal(0.0, 0.25, m)
        cost1 = (cost_base[cond] + cost_day[cond] * los1) * hosp.cost_factor[h1] * noise1

        can_transfer = (age >= 18) & ~np.isin(cond, [COND_NAMES.index("OBSTETRICS")])
        transfer = can_transfer & (rng.random(m) < _TRANSFER_RATE)
        act_transfer = transfer & (rng.random(m) < 0.2)
        # Same-day return: discharged home, back the same day to the same hospital, same diagnosis.
        bounce = ~transfer & (age >= 18) & (rng.random(m) < ret.same_day_continuation)
        second = transfer | bounce
        gap = np.where(bounce, 0, rng.integers(0, 2, m))
        h2 = np.where(bounce, h1, _pick_hospitals(rng, hosp, pat.department[act], np.ones(m, dtype=bool)))
        los2 = np.maximum(1, np.round(rng.gamma(2.0, np.where(bounce, 1.0, 2.5), m))).astype(np.int64)
        cost2 = np.where(
            bounce, 0.5 * cost_base[cond] + cost_day[cond] * los2, 1500 + 450 * los2
        ) * hosp.cost_factor[h2] * rng.lognormal(0.0, 0.25, m)
        dis1 = adm + los1
        adm2 = dis1 + gap
        dis2 = adm2 + los2
        discharge = np.where(second, dis2, dis1)
        episode_cost = cost1 + np.where(second, cost2, 0.0)
        last_hospital = np.where(second, h2, h1)

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
        p_death = death_rate[cond] * np.exp(0.04 * (age - 65) + latent.frailty_death * frail)
        died = recorded & (rng.random(m) < np.clip(p_death, 0, 0.9))
        p_ssr = np.where(age >= 65, ssr_rate[cond], ssr_rate[cond] * 0.3) * np.exp(latent.frailty_rehab * frail)
        ssr = ~died & (rng.random(m) < np.clip(p_ssr, 0, 0.95))
        ama_rate = ret.against_medical_advice * np.where(age < 50, 2.0, 1.0) * np.where(pat.sex[act] == 1, 1.5, 1.0)
        ama = ~died & ~ssr & (age >= 18) & (rng.random(m) < ama_rate)
        logit = readmission_logit(
            eff, age=age, cost=episode_cost, poverty=poverty[act], prior_12m=prior_12m,
            emergency=emergency, charlson=charlson, male=pat.sex[act] == 1, offset=offset[cond],
            los=discharge - adm, since_discharge=np.where(discharged[act], adm - last_discharge[act], -1),
            cond=cond, rehab=ssr, lives_alone=pat.lives_alone[act],
            frailty=frail, against_advice=ama,
        )
        # Tariffs rise after the risk is set: inflation shifts cost, not readmissions.
        cost1, cost2 = cost1 * inflation, cost2 * inflation
        p_draw = np.where(died, 0.0, 1.0 / (1.0 + np.exp(-logit)))
        drawn = rng.random(m) < p_draw
        home = ~ssr
        delay = _draw_delay(rng, ret, home)
        # The next unrelated unplanned admission, at the patient's background rate: from the next
        # day after a home discharge, from day 2 after rehabilitation (day 1 would chain as a transfer).
        first_day = np.where(home, 1, 2)
        background = first_day + np.floor(rng.exponential(pat.mean_gap_days[act])).astype(np.int64)
        p_background = 1.0 - np.exp(-(31 - first_day) / pat.mean_gap_days[act])
        label_probability = np.where(died, 0.0, 1.0 - (1.0 - p_draw) * (1.0 - p_background))
        readmission_first = drawn & (delay <= background)
        next_gap = np.where(readmission_first, delay, background)
        returned = ~died & (next_gap <= 30)
        reason = np.where(returned, np.where(readmission_first, "readmission", "unrelated"), "")

        last_mode = np.where(died, "9", np.where(ssr, "7", "8"))
        last_dest = np.where(ssr, "2", "")
        first_mode = np.where(transfer, np.where(act_transfer, "0", "7"), np.where(bounce, "8", last_mode))
        first_dest = np.where(transfer, "1", np.where(bounce, "", last_dest))
        ghm_root = np.array([catalog.CONDITIONS[c].ghm_root for c in COND_NAMES])[cond]
        episode_ids = np.arange(episode_seq, episode_seq + m)
        episode_seq += m
        common = {
            "patient_idx": act, "episode_seq": episode_ids, "age": age,
            "icd10": codes, "condition": np.array(COND_NAMES)[cond], "comorbidities": listed,
            "probability": label_probability, "readmission_probability": p_draw, "readmitted": returned,
            "return_reason": reason, "return_days": np.where(returned, next_gap, -1),
        }
        first_stay = {
            **common, "stay_in_episode": np.zeros(m, dtype=np.int64), "hospital_idx": h1,
            "admission": adm, "discharge": dis1, "cost": cost1,
            "ghm": np.char.add(ghm_root.astype(str), _severity(los1, charlson)),
            "entry_mode": np.full(m, "8"), "entry_source": np.where(emergency, "5", ""),
            "discharge_mode": first_mode, "discharge_destination": first_dest,
            "kind": np.full(m, "unplanned"), "against_medical_advice": ama & ~second,
        }
        second_stay = {
            **common, "stay_in_episode": np.ones(m, dtype=np.int64), "hospital_idx": h2,
            "admission": adm2, "discharge": dis2, "cost": cost2,
            "ghm": np.char.add(ghm_root.astype(str), _severity(los2, charlson)),
            "entry_mode": np.where(bounce, "8", np.where(act_transfer, "0", "7")),
            "entry_source": np.where(bounce, "5", "1"),
            "discharge_mode": last_mode, "discharge_destination": last_dest,
            "kind": np.where(bounce, "same_day_return", "transfer"), "against_medical_advice": ama,
        }
        rec = np.flatnonzero(recorded)
        cols.add(**{k: v[rec] for k, v in first_stay.items()})
        rec_2 = np.flatnonzero(recorded & second)
        cols.add(**{k: v[rec_2] for k, v in second_stay.items()})

        # Elective procedures scheduled at discharge (kept below only if they really take place).
        kind = _planned_kind(cond, codes, ret, rng.random(m))
        p_delay = ret.planned_delay_min + np.floor(rng.gamma(3.0, ret.planned_delay_scale, m)).astype(np.int64)
        p_los = rng.poisson(np.array([catalog.PLANNED_PROCEDURES.get(k, ("", "", 1.0, 0.0))[2] for k in kind]))
        sched = np.flatnonzero(recorded & ~died & (kind != ""))
        if sched.size:
            k_s = kind[sched]
            code = np.array([catalog.PLANNED_PROCEDURES[k][0] or c for k, c in zip(k_s, codes[sched], strict=True)])
            ghm = np.array([catalog.PLANNED_PROCEDURES[k][1] or catalog.CANCER_SURGERY_GHM[c]
                            for k, c in zip(k_s, codes[sched], strict=True)])
            base = np.array([catalog.PLANNED_PROCEDURES[k][3] for k in k_s])
            p_adm = discharge[sched] + p_delay[sched]
            planned.add(
                patient_idx=act[sched], index_seq=episode_ids[sched], icd10=code, ghm=ghm,
                hospital_idx=last_hospital[sched], admission=p_adm, discharge=p_adm + p_los[sched],
                cost=base * (1 + 0.15 * p_los[sched]) / 2 * hosp.cost_factor[last_hospital[sched]]
                * rng.lognormal(0.0, 0.2, sched.size) * inflation[sched],
                comorbidities=listed[sched], planned_days=p_delay[sched],
                birth_year=pat.birth_year[act[sched]],
            )

        # Remember this episode for the prior-stay counts of later ones.
        seen = act[recorded]
        slot = hist[seen].argmin(axis=1)
        hist[seen, slot] = adm[recorded]
        previous[act] = cond
        prev_hospital[act] = last_hospital
        prev_category[act] = category
        last_discharge[act] = discharge
        discharged[act] = True
        death_day[act[died]] = discharge[died]
        next_adm[act] = discharge + next_gap
        is_readmission[act] = readmission_first
        same_day[act] = readmission_first & (delay == 0)
        in_window[act] = next_gap <= 30
    stays = cols.frame() if cols.data else _empty_stays()
    stays = _add_planned(stays, planned, death_day, start, n_days, episode_seq)
    return stays, death_day, last_discharge


def _add_planned(
    stays: pl.DataFrame, planned: _Columns, death_day: IntArray, start: np.datetime64, n_days: int,
    episode_seq: int,
) -> pl.DataFrame:
    """Planned procedures that take place (inside the data, before death, clashing with no
    unplanned stay +-1 day nor with another procedure), and their delay on the index episode."""
    stays = stays.with_columns(planned_return_days=pl.lit(None, dtype=pl.Int64))
    if not planned.data:
        return stays
    proc = planned.frame()
    death = pl.DataFrame({"patient_idx": np.arange(death_day.size), "death_day": death_day})
    busy = stays.select("patient_idx", busy_from="admission", busy_to="discharge")
    clashing = (
        proc.join(busy, on="patient_idx")
        .filter((pl.col("admission") <= pl.col("busy_to") + 1) & (pl.col("discharge") >= pl.col("busy_from") - 1))
        .select("index_seq").unique()
    )
    proc = (
        proc.join(clashing, on="index_seq", how="anti")
        .join(death, on="patient_idx")
        .filter(pl.col("discharge") <= n_days)
        .filter((pl.col("death_day") < 0) | (pl.col("discharge") < pl.col("death_day")))
        .sort("patient_idx", "admission", "index_seq")
        # two procedures of one patient never overlap (nor touch): keep the earlier one
        .filter((pl.col("admission") > pl.col("discharge").shift(1).over("patient_idx") + 1).fill_null(True))
        .drop("death_day")
    )
    years = (start + proc["admission"].to_numpy()).astype("datetime64[Y]").astype(np.int64) + 1970
    m = proc.height
    frame = proc.with_columns(
        episode_seq=pl.Series(np.arange(episode_seq, episode_seq + m), dtype=pl.Int64),
        age=pl.Series(years - proc["birth_year"].to_numpy(), dtype=pl.Int64),
        condition=pl.lit("PLANNED_PROCEDURE"), probability=pl.lit(None, dtype=pl.Float64),
        readmission_probability=pl.lit(None, dtype=pl.Float64), readmitted=pl.lit(False),
        return_reason=pl.lit(""), return_days=pl.lit(-1, dtype=pl.Int64),
        stay_in_episode=pl.lit(0, dtype=pl.Int64), entry_mode=pl.lit("8"), entry_source=pl.lit(""),
        discharge_mode=pl.lit("8"), discharge_destination=pl.lit(""), kind=pl.lit("planned_procedure"),
        against_medical_advice=pl.lit(False), planned_return_days=pl.lit(None, dtype=pl.Int64),
    )
    delays = proc.select(pl.col("index_seq").alias("episode_seq"), pl.col("planned_days").alias("_days"))
    stays = (
        stays.join(delays, on="episode_seq", how="left", maintain_order="left")
        .with_columns(planned_return_days=pl.col("_days"))
        .drop("_days")
    )
    return pl.concat([stays, frame.select(stays.columns)], how="vertical_relaxed")


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
            "discharge_destination": pl.String, "readmission_probability": pl.Float64,
            "return_reason": pl.String, "return_days": pl.Int64, "kind": pl.String,
            "against_medical_advice": pl.Boolean,
        }
    )
