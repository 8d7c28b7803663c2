"""Facts and assumptions the simulator draws from.

Published figures are cited where they are used; the rest are plausible assumptions of
this simulator (documented in README, "Simulator"), not statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

# Population by department (Insee, 2020 census, millions) and poverty rates (Insee
# Filosofi 2020, % of people under the poverty line). Region poverty rate: 15.5%.
DEPARTMENTS: dict[str, tuple[str, float, float]] = {
    # code: (label, population in millions, poverty rate %)
    "75": ("Paris", 2.15, 15.4),
    "77": ("Seine-et-Marne", 1.42, 11.7),
    "78": ("Yvelines", 1.45, 9.7),
    "91": ("Essonne", 1.30, 13.2),
    "92": ("Hauts-de-Seine", 1.63, 11.9),
    "93": ("Seine-Saint-Denis", 1.65, 27.6),
    "94": ("Val-de-Marne", 1.41, 16.6),
    "95": ("Val-d'Oise", 1.25, 17.0),
}
REGION_POVERTY_RATE = 15.5


@dataclass(frozen=True)
class Condition:
    """An unplanned episode type: its codes, DRG root, length of stay and cost model."""

    name: str
    codes: tuple[tuple[str, float], ...]  # ICD-10 main diagnosis and its weight
    ghm_root: str  # first five characters of the GHM (DRG)
    los_mean: float  # mean length of stay in days (gamma distributed)
    cost_base: float  # euros per stay
    cost_per_day: float  # euros per day in hospital
    emergency_rate: float  # share entering through the emergency department
    death_rate: float  # in-hospital death probability at age 65
    ssr_rate: float  # share discharged to rehabilitation (SSR) at age 65+
    readmission_offset: float  # added to the readmission log-odds


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        # COPD exacerbation: mean stay 10.9 days in France (2015-16, see README).
        Condition("COPD", (("J441", 0.6), ("J440", 0.2), ("J449", 0.2)), "04M05",
                  10.9, 2600, 560, 0.70, 0.030, 0.10, 0.00),
        Condition("HEART_FAILURE", (("I500", 0.5), ("I509", 0.4), ("I501", 0.1)), "05M09",
                  9.0, 2300, 470, 0.70, 0.050, 0.10, 0.00),
        Condition("DIABETES", (("E119", 0.5), ("E112", 0.2), ("E111", 0.1), ("E115", 0.2)),
                  "10M02", 6.0, 1700, 330, 0.40, 0.010, 0.03, 0.10),
        Condition("CKD", (("N184", 0.5), ("N185", 0.3), ("N183", 0.2)), "11M04",
                  7.0, 1900, 380, 0.40, 0.030, 0.05, 0.20),
        Condition("CANCER", (("C349", 0.4), ("C509", 0.3), ("C189", 0.3)), "17M06",
                  8.0, 2600, 430, 0.30, 0.070, 0.05, 0.20),
        Condition("STROKE", (("I639", 0.7), ("I634", 0.3)), "01M30",
                  11.0, 2600, 400, 0.90, 0.080, 0.35, 0.00),
        Condition("PNEUMONIA", (("J189", 0.7), ("J159", 0.3)), "04M07",
                  7.0, 1900, 380, 0.75, 0.050, 0.08, 0.00),
        Condition("HIP_FRACTURE", (("S720", 0.6), ("S721", 0.4)), "08C47",
                  10.0, 3600, 330, 0.90, 0.040, 0.50, -0.10),
        Condition("OBSTETRICS", (("O800", 0.7), ("O820", 0.3)), "14Z14",
                  4.0, 2300, 180, 0.10, 0.0001, 0.00, -1.50),
        Condition("OTHER", (("K359", 0.2), ("K802", 0.2), ("R074", 0.2), ("N390", 0.15),
                            ("I489", 0.15), ("A099", 0.1)), "06M10",
                  3.0, 1300, 330, 0.50, 0.005, 0.02, -0.20),
        Condition("PEDIATRIC", (("J219", 0.5), ("A099", 0.3), ("K359", 0.2)), "04M18",
                  2.5, 1200, 300, 0.60, 0.0005, 0.00, -1.00),
    )
}
CHRONIC = ("COPD", "HEART_FAILURE", "DIABETES", "CKD", "CANCER")

# Share of patients carrying each chronic condition, by age band (assumption).
CHRONIC_PREVALENCE: dict[str, dict[str, float]] = {
    "45-64": {"COPD": 0.06, "HEART_FAILURE": 0.03, "DIABETES": 0.08, "CKD": 0.03, "CANCER": 0.07},
    "65-79": {"COPD": 0.17, "HEART_FAILURE": 0.10, "DIABETES": 0.10, "CKD": 0.06, "CANCER": 0.10},
    "80+": {"COPD": 0.21, "HEART_FAILURE": 0.18, "DIABETES": 0.08, "CKD": 0.08, "CANCER": 0.07},
}

# Mix of acute (non-chronic) episodes by age band (assumption).
ACUTE_MIX: dict[str, dict[str, float]] = {
    "minor": {"PEDIATRIC": 1.0},
    "women 18-44": {"OBSTETRICS": 0.45, "OTHER": 0.48, "PNEUMONIA": 0.07},
    "18-64": {"OTHER": 0.78, "PNEUMONIA": 0.12, "STROKE": 0.07, "HIP_FRACTURE": 0.03},
    "65-79": {"OTHER": 0.50, "PNEUMONIA": 0.22, "STROKE": 0.16, "HIP_FRACTURE": 0.12},
    "80+": {"OTHER": 0.38, "PNEUMONIA": 0.25, "STROKE": 0.15, "HIP_FRACTURE": 0.22},
}

# Age of the simulated beneficiaries at the start of the data (share, age range).
AGE_BANDS: tuple[tuple[float, int, int], ...] = (
    (0.15, 0, 17),
    (0.34, 18, 44),
    (0.28, 45, 64),
    (0.15, 65, 79),
    (0.08, 80, 97),
)

# Planned sessions (excluded from index stays and from readmissions).
PLANNED_SESSIONS: dict[str, tuple[str, str, float]] = {
    # kind: (ICD-10 main diagnosis, GHM, mean cost in euros)
    "chemotherapy": ("Z511", "28Z07Z", 650.0),
    "radiotherapy": ("Z510", "28Z18Z", 260.0),
    "dialysis": ("Z491", "28Z04Z", 340.0),
}

# Comorbidities listed as associated diagnoses, by Charlson category (Quan 2005 ICD-10
# coding, original Charlson weights). One code per category.
COMORBIDITIES: tuple[tuple[str, str, int], ...] = (
    ("I252", "myocardial_infarction", 1),
    ("I509", "heart_failure", 1),
    ("I739", "peripheral_vascular", 1),
    ("I693", "cerebrovascular", 1),
    ("F03", "dementia", 1),
    ("J449", "chronic_pulmonary", 1),
    ("M069", "rheumatic", 1),
    ("K259", "peptic_ulcer", 1),
    ("K703", "mild_liver", 1),
    ("E119", "diabetes", 1),
    ("E112", "diabetes_complicated", 2),
    ("G819", "hemiplegia", 2),
    ("N184", "renal", 2),
    ("C349", "cancer", 2),
    ("C787", "metastatic", 6),
    ("K766", "severe_liver", 3),
    ("B20", "hiv", 6),
)
# Comorbidity implied by each chronic condition (index into COMORBIDITIES).
CHRONIC_COMORBIDITY: dict[str, str] = {
    "COPD": "J449",
    "HEART_FAILURE": "I509",
    "DIABETES": "E119",
    "CKD": "N184",
    "CANCER": "C349",
}
# Frequent codes with no Charlson weight (hypertension, dyslipidaemia, obesity, tobacco, and
# R53+0, an ATIH extension of the French CIM-10 written with '+').
NOISE_DIAGNOSES: tuple[str, ...] = ("I10", "E785", "E669", "F172", "Z921", "R53+0")

# Hospital categories: code -> (share of hospitals outside Paris, beds range, cost factor).
HOSPITAL_MIX: dict[str, tuple[float, tuple[int, int], float]] = {
    "101": (0.15, (700, 1500), 1.15),  # AP-HP / CHU
    "355": (0.35, (250, 700), 1.00),  # CH
    "365": (0.15, (120, 400), 1.00),  # ESPIC
    "128": (0.35, (60, 250), 0.85),  # private clinic
}

# Dispensed drugs by condition: (ATC code, CIP13, box price in euros).
DRUGS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "COPD": (("R03AL03", "3400930012345", 38.5), ("R03BB04", "3400930023456", 33.2)),
    "HEART_FAILURE": (("C03CA01", "3400930034567", 4.1), ("C07AB07", "3400930045678", 6.3)),
    "DIABETES": (("A10BA02", "3400930056789", 3.9), ("A10BD07", "3400930067890", 31.0)),
    "CKD": (("C09AA05", "3400930078901", 5.2), ("B03XA01", "3400930089012", 120.0)),
    "CANCER": (("L02BA01", "3400930090123", 45.0), ("A04AA01", "3400930101234", 18.0)),
    "OCCASIONAL": (
        ("N02BE01", "3400930112345", 1.9),
        ("J01CA04", "3400930123456", 2.7),
        ("M01AE01", "3400930134567", 2.2),
        ("A02BC01", "3400930145678", 4.8),
        ("R05DA01", "3400930156789", 2.5),
    ),
}
HOSPITAL_CATEGORIES_SHORT: dict[str, str] = {"101": "CHU", "355": "CH", "365": "ESPIC", "128": "Clinique"}

# Elective procedures scheduled at the discharge of an unplanned episode (planned readmissions
# the definition must exclude): kind -> (main diagnosis or "" for the index episode's own code,
# GHM, mean length of stay in days, mean cost in euros). GHM third character C = surgical,
# K = interventional: CMS "potentially planned procedures", with a non-acute main diagnosis.
PLANNED_PROCEDURES: dict[str, tuple[str, str, float, float]] = {
    "angioplasty": ("I251", "05K061", 1.5, 4200.0),  # after heart failure: coronary disease, stent
    "cholecystectomy": ("K802", "07C141", 2.0, 3900.0),  # after a gallstone (K802) episode
    "cancer_surgery": ("", "", 6.0, 9000.0),  # after a cancer episode: GHM by site below
}
CANCER_SURGERY_GHM: dict[str, str] = {"C349": "04C021", "C509": "09C051", "C189": "06C041"}

# A discharge against medical advice has no exit mode of its own in MS_SOR_V (SOR_MOD 8,
# domicile): the simulator marks it, as coders do, with the associated diagnosis Z53.2
# ("Acte non effectué par décision du sujet pour des raisons autres et non précisées").
AGAINST_MEDICAL_ADVICE_CODE = "Z532"
