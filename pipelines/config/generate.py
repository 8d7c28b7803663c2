"""params.yaml section `generate`: the simulator's size, dirt and planted effects."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from pipelines.config.base import Strict


class DirtRates(Strict):
    """Share of rows hit by each corruption kind (see contracts.CORRUPTION_KINDS)."""

    department_format: float = Field(0.04, ge=0, le=1)
    icd_format: float = Field(0.04, ge=0, le=1)
    decimal_comma: float = Field(0.05, ge=0, le=1)
    discharge_before_admission: float = Field(0.002, ge=0, le=1)
    missing_cost: float = Field(0.002, ge=0, le=1)
    negative_cost: float = Field(0.001, ge=0, le=1)
    unknown_finess: float = Field(0.001, ge=0, le=1)
    impossible_age: float = Field(0.001, ge=0, le=1)
    impossible_birth_year: float = Field(0.002, ge=0, le=1)
    malformed_line: float = Field(0.0005, ge=0, le=1)
    duplicate_row: float = Field(0.003, ge=0, le=1)
    pmsi_rejected_stay: float = Field(0.002, ge=0, le=1)  # extra RSAs the PMSI filters drop (not corruptions)


class EffectParams(Strict):
    """Log-odds effects of the simulator's readmission model (the planted truth, README "Simulator").

    Non-linear on purpose: a U-shaped length of stay (the short arm here, the long arm through
    cost), age slopes of opposite sign by condition, a step at `prior_step_at` prior episodes,
    and two unobserved factors (frailty, living alone) that the feature mart never sees.
    """

    intercept: float = -3.7
    age_per_decade: float = 0.4  # centred on 65 years
    log_cost: float = 0.65  # per log-euro, centred on 4,000 euros
    poverty_per_point: float = 0.018  # per point of department poverty rate above 15.5%
    prior_stay: float = 0.0  # per unplanned episode in the 365 days before, up to 5
    prior_step: float = 0.7  # added once the patient had `prior_step_at` or more of them
    prior_step_at: int = Field(3, ge=1)
    emergency: float = 0.15
    charlson_point: float = 0.06  # per Charlson point, up to 6
    male: float = 0.1
    short_stay: float = 1.3  # adult episodes of at most `short_stay_days` days (premature discharge)
    short_stay_days: int = Field(1, ge=0)
    recent_discharge: float = 0.3  # admitted at most `recent_discharge_days` after the last unplanned discharge
    recent_discharge_days: int = Field(30, ge=0)
    age_cardiorespiratory_per_decade: float = 0.75  # COPD, heart failure: extra slope per decade above 65
    age_cancer_per_decade: float = -0.7  # cancer, diabetes, other acute: extra slope per decade above 65
    rehab_discharge: float = -0.5  # discharged to rehabilitation (SSR)
    lives_alone_home: float = 0.4  # unobserved: lives alone and discharged home
    frailty: float = 0.35  # unobserved: per standard deviation of the patient's latent frailty
    against_medical_advice: float = 0.7  # discharged against medical advice (excluded from index stays)


class LatentParams(Strict):
    """Unobserved patient traits (never written to the extract) and what they also drive."""

    lives_alone_65: float = Field(0.35, ge=0, le=1)  # share living alone at 65+ (half of it under 65)
    frailty_los: float = 0.15  # length of stay x exp(this x frailty)
    frailty_gap: float = 0.2  # time between unplanned episodes x exp(-this x frailty)
    frailty_comorbidity: float = 0.3  # extra comorbidities' rate x exp(this x frailty)
    frailty_rehab: float = 0.4  # discharge-to-rehabilitation odds x exp(this x frailty)
    frailty_death: float = 0.3  # in-hospital death rate x exp(this x frailty)


class ReturnParams(Strict):
    """Returns to hospital after a discharge besides the planted readmission (README "Returns")."""

    delay_decay_days: float = Field(12, gt=0)  # readmission delay weights exp(-(d - 1) / this), d = 1..30
    same_day_weight: float = Field(0.3, ge=0)  # weight of day 0 (home discharges only) relative to day 1
    # home discharges back the same day to the same hospital with the same diagnosis (one stay continued)
    same_day_continuation: float = Field(0.01, ge=0, le=1)
    against_medical_advice: float = Field(0.012, ge=0, le=1)  # share of home discharges at 65 (x2 under 50, x1.5 men)
    planned_heart_failure: float = Field(0.1, ge=0, le=1)  # elective coronary angioplasty scheduled at discharge
    planned_cancer: float = Field(0.2, ge=0, le=1)  # elective cancer surgery scheduled at discharge
    planned_gallstones: float = Field(0.3, ge=0, le=1)  # elective cholecystectomy after a gallstone (K802) episode
    planned_delay_min: int = Field(7, ge=2)  # planned procedure: min + gamma(shape 3, mean 3 x scale) days
    planned_delay_scale: float = Field(8.0, gt=0)


class DriftParams(Strict):
    """Shifts a region really sees, applied to admissions from `start_date` (the monitored window)."""

    enabled: bool = False  # false: the no-drift setting
    start_date: date = date(2024, 4, 1)
    older_population: float = Field(0.35, ge=0, lt=1)  # share of under-65 episodes that no longer happen
    cost_inflation: float = Field(0.15, ge=0, le=2)  # tariffs rise; the risk does not
    new_hospital_share: float = Field(0.4, ge=0, le=1)  # share of 93 residents' stays going to a new clinic
    coding_intensity: float = Field(0.4, ge=0, le=1)  # chance a stay gains an extra coded comorbidity


class GenerateParams(Strict):
    scale: float = Field(1.0, gt=0)
    patients: int = Field(30000, gt=0)
    hospitals: int = Field(64, ge=8)
    start_date: date = date(2021, 1, 1)
    end_date: date = date(2024, 12, 31)
    chunk_patients: int = Field(20000, gt=0)
    dirt: DirtRates = DirtRates()
    effects: EffectParams = EffectParams()
    latent: LatentParams = LatentParams()
    returns: ReturnParams = ReturnParams()
    drift: DriftParams = DriftParams()

    @property
    def n_patients(self) -> int:
        return max(1, round(self.patients * self.scale))
