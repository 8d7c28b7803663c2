"""Beneficiaries and establishments of the simulated region."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.config import LatentParams
from pipelines.generate import catalog

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

DEPARTMENT_CODES: tuple[str, ...] = tuple(catalog.DEPARTMENTS)
COMORBIDITY_CODES: tuple[str, ...] = tuple(c for c, _, _ in catalog.COMORBIDITIES)
# Patient-level prevalence weights of each comorbidity (assumption), same order.
_COMORBIDITY_WEIGHTS = np.array(
    [0.15, 0.06, 0.10, 0.10, 0.08, 0.04, 0.05, 0.05, 0.04, 0.12, 0.05, 0.02, 0.06, 0.03, 0.02,
     0.01, 0.005]
)


@dataclass(frozen=True)
class Hospitals:
    finess: StrArray
    name: StrArray
    postal_code: StrArray
    department: StrArray
    category: StrArray
    beds: IntArray
    cost_factor: FloatArray
    opens_with_drift: BoolArray  # a clinic that only takes patients in the drift window


@dataclass(frozen=True)
class Patients:
    patient_id: StrArray
    sex: IntArray  # 1 male, 2 female
    birth_year: IntArray
    department: StrArray
    commune: StrArray
    chronic: StrArray  # chronic condition name or ""
    comorbidity_mask: IntArray  # bit j set: the patient has COMORBIDITIES[j]
    has_stays: BoolArray
    mean_gap_days: FloatArray  # mean time between unplanned episodes (frailty included)
    frailty: FloatArray  # latent frailty, standard normal: never written to the extract
    lives_alone: BoolArray  # unobserved social isolation: never written to the extract


def pseudonym(seed: int, index: int) -> str:
    """A 17-character pseudonymous id (SNDS ids are hashes; no real identifier involved)."""
    return hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:17].upper()


def _department_weights() -> FloatArray:
    pop = np.array([catalog.DEPARTMENTS[d][1] for d in DEPARTMENT_CODES])
    return np.asarray(pop / pop.sum(), dtype=np.float64)


def make_hospitals(n: int, rng: np.random.Generator, new_clinic_in_93: bool = False) -> Hospitals:
    """Establishments spread by population; Paris holds most AP-HP sites.

    With `new_clinic_in_93`, one more private clinic in 93 is listed (the drift scenario).
    """
    weights = _department_weights()
    counts = np.maximum(1, np.round(weights * n).astype(int))
    counts[0] += n - counts.sum()  # Paris absorbs rounding
    codes = list(catalog.HOSPITAL_MIX)
    shares = np.array([catalog.HOSPITAL_MIX[c][0] for c in codes])
    finess, names, postals, depts, cats, beds, factors = [], [], [], [], [], [], []
    serial = 0
    for dept, count in zip(DEPARTMENT_CODES, counts, strict=True):
        label = catalog.DEPARTMENTS[dept][0]
        p = shares.copy()
        if dept == "75":
            p[0] *= 3.0  # AP-HP sites concentrate in Paris
        p = p / p.sum()
        chosen = rng.choice(len(codes), size=int(count), p=p)
        chosen[0] = 0 if dept in ("75", "92", "93", "94") else 1  # AP-HP/CHU or CH anchor
        for k, idx in enumerate(chosen):
            serial += 1
            cat = codes[idx]
            low, high = catalog.HOSPITAL_MIX[cat][1]
            finess.append(f"{dept}{serial * 7919 % 10_000_000:07d}")
            short = catalog.HOSPITAL_CATEGORIES_SHORT[cat]
            names.append(f"{short} {label} {k + 1}")
            tail = rng.integers(1, 21) if dept == "75" else rng.integers(0, 10) * 10 + 100
            postals.append(f"{dept}{tail:03d}")
            depts.append(dept)
            cats.append(cat)
            beds.append(int(rng.integers(low, high + 1)))
            factors.append(catalog.HOSPITAL_MIX[cat][2])
    if new_clinic_in_93:
        serial += 1
        finess.append(f"93{serial * 7919 % 10_000_000:07d}")
        names.append("Clinique Seine-Saint-Denis Nouvelle")
        postals.append("93200")
        depts.append("93")
        cats.append("128")
        beds.append(180)
        factors.append(catalog.HOSPITAL_MIX["128"][2])
    return Hospitals(
        opens_with_drift=np.array([False] * (len(finess) - new_clinic_in_93) + [True] * new_clinic_in_93),
        finess=np.array(finess),
        name=np.array(names),
        postal_code=np.array(postals),
        department=np.array(depts),
        category=np.array(cats),
        beds=np.array(beds, dtype=np.int64),
        cost_factor=np.array(factors, dtype=np.float64),
    )


def _age_band_labels(age: IntArray) -> list[str]:
    return ["45-64" if a < 65 else "65-79" if a < 80 else "80+" for a in age]


def make_patients(
    n: int, first_index: int, seed: int, start_year: int, rng: np.random.Generator,
    latent: LatentParams | None = None,
) -> Patients:
    """n beneficiaries with age, sex, residence, chronic condition and comorbidities.

    Two traits stay hidden from the extract: a latent frailty (standard normal) that also
    lengthens stays, shortens the time between episodes and adds comorbidities (`latent`),
    and living alone (more frequent at 65+).
    """
    latent = latent or LatentParams()
    band_p = np.array([b[0] for b in catalog.AGE_BANDS])
    band = rng.choice(len(catalog.AGE_BANDS), size=n, p=band_p / band_p.sum())
    lows = np.array([b[1] for b in catalog.AGE_BANDS])[band]
    highs = np.array([b[2] for b in catalog.AGE_BANDS])[band]
    age0 = rng.integers(lows, highs + 1)
    sex = np.where(rng.random(n) < 0.47 + 0.02 * (age0 < 65), 1, 2).astype(np.int64)
    dept_idx = rng.choice(len(DEPARTMENT_CODES), size=n, p=_department_weights())
    department = np.array(DEPARTMENT_CODES)[dept_idx]
    commune = np.char.add(department, np.char.zfill(rng.integers(1, 200, n).astype(str), 3))

    chronic = np.full(n, "", dtype=object)
    u = rng.random(n)
    bands = np.array(_age_band_labels(age0))
    for label, prevalence in catalog.CHRONIC_PREVALENCE.items():
        in_band = (bands == label) & (age0 >= 45)
        cum = np.zeros(n)
        for name, share in prevalence.items():
            # COPD is more frequent in men (about 62% of COPD stays are men's, see README).
            eff = share * (np.where(sex == 1, 1.25, 0.75) if name == "COPD" else 1.0)
            hit = in_band & (u >= cum) & (u < cum + eff)
            chronic[hit] = name
            cum = cum + eff
    chronic_arr = chronic.astype(str)

    mask = np.zeros(n, dtype=np.int64)
    for name, code in catalog.CHRONIC_COMORBIDITY.items():
        mask[chronic_arr == name] |= 1 << COMORBIDITY_CODES.index(code)
    frailty = rng.standard_normal(n)
    lives_alone = rng.random(n) < latent.lives_alone_65 * np.where(age0 >= 65, 1.0, 0.5)
    lam = (0.15 + 0.5 * (age0 >= 65) + 0.5 * (age0 >= 80)) * np.exp(latent.frailty_comorbidity * frailty)
    extra = rng.poisson(lam)
    probs = _COMORBIDITY_WEIGHTS / _COMORBIDITY_WEIGHTS.sum()
    for k in range(int(extra.max(initial=0))):
        pick = rng.choice(len(COMORBIDITY_CODES), size=n, p=probs)
        mask[extra > k] |= (1 << pick[extra > k]).astype(np.int64)

    has_stays = rng.random(n) < 0.92
    mean_gap = np.where(chronic_arr == "", 1000.0, 360.0)
    mean_gap[chronic_arr == "COPD"] = 260.0
    mean_gap[chronic_arr == "HEART_FAILURE"] = 300.0
    mean_gap = mean_gap * np.exp(-latent.frailty_gap * frailty)
    ids = np.array([pseudonym(seed, first_index + i) for i in range(n)])
    return Patients(
        patient_id=ids,
        sex=sex,
        birth_year=(start_year - age0).astype(np.int64),
        department=department,
        commune=commune,
        chronic=chronic_arr,
        comorbidity_mask=mask,
        has_stays=has_stays,
        mean_gap_days=mean_gap,
        frailty=frailty,
        lives_alone=lives_alone,
    )


def charlson_from_mask(mask: IntArray) -> IntArray:
    """Charlson score of a comorbidity bit mask, keeping only the worse of paired levels."""
    weights = np.array([w for _, _, w in catalog.COMORBIDITIES], dtype=np.int64)
    bits = ((mask[:, None] >> np.arange(len(weights))) & 1).astype(bool)
    cats = [c for _, c, _ in catalog.COMORBIDITIES]
    for mild, severe in (
        ("diabetes", "diabetes_complicated"),
        ("cancer", "metastatic"),
        ("mild_liver", "severe_liver"),
    ):
        i, j = cats.index(mild), cats.index(severe)
        bits[:, i] &= ~bits[:, j]
    return np.asarray((bits * weights).sum(axis=1), dtype=np.int64)
