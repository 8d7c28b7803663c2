"""params.yaml sections `train`, `evaluate` and `promote`: the model toolkit's settings."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from pipelines.config.base import Strict


class SearchSpace(Strict):
    """Bounds of the Optuna search over RandomForestClassifier hyper-parameters."""

    n_estimators: tuple[int, int] = (50, 300)
    max_depth: tuple[int, int] = (4, 20)
    min_samples_leaf: tuple[int, int] = (5, 100)  # sampled on a log scale
    max_features: tuple[str | float, ...] = ("sqrt", 0.3, 0.5)
    max_samples: tuple[float, float] = (0.5, 1.0)

    @model_validator(mode="after")
    def _ordered(self) -> SearchSpace:
        for name in ("n_estimators", "max_depth", "min_samples_leaf", "max_samples"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"search.{name}: expected 0 < low <= high, got {low}, {high}")
        if self.max_samples[1] > 1.0:
            raise ValueError("search.max_samples: the upper bound is a fraction of rows (<= 1.0)")
        if not self.max_features:
            raise ValueError("search.max_features: at least one choice")
        return self


class TrainParams(Strict):
    experiment: str = "idf-readmission"
    model_name: str = "idf-readmission-rf"
    # Temporal split on discharge_date: train < train_end <= valid < valid_end <= test.
    train_end: date = date(2023, 10, 1)
    valid_end: date = date(2024, 4, 1)
    n_trials: int = Field(25, ge=1)
    timeout_s: float = Field(1800, gt=0)  # safety net; n_trials is the binding limit by default
    # When the timeout stops tuning before n_trials: "error" stops train (the model would depend on
    # how busy the machine was); "keep" keeps the best trial so far, warns, and train.json says timeout_hit.
    on_timeout: Literal["error", "keep"] = "error"
    cv_folds: int = Field(3, ge=2)  # time-ordered folds inside the training window
    # Training rows discharged less than this many days before a CV validation fold starts are
    # dropped from that fold's training set: their 30-day label is not known yet at that date.
    cv_gap_days: int = Field(30, ge=0)
    min_precision: float = Field(0.25, gt=0, lt=1)  # precision floor of the operating threshold
    # No validation threshold reaches min_precision: "f2" takes the threshold that maximises F2
    # (recorded as threshold_rule="f2_fallback"); "error" stops the stage.
    threshold_fallback: Literal["f2", "error"] = "f2"
    # The final threshold: the validation precision's 95% Wilson lower bound reaches min_precision
    # ("wilson_lower", a margin for the next window) or its point estimate does ("point").
    threshold_bound: Literal["point", "wilson_lower"] = "wilson_lower"
    # The served probability: the forest's score mapped by a calibration fitted on the validation
    # window (sigmoid = Platt scaling on the logit, keeps the ranking; isotonic; none = the score).
    calibration: Literal["sigmoid", "isotonic", "none"] = "sigmoid"
    pruning: bool = True  # MedianPruner on the running mean of the per-fold objective
    pruning_startup_trials: int = Field(5, ge=0)  # trials never pruned (the median needs a base)
    pruning_warmup_folds: int = Field(1, ge=0)  # folds always run before a trial can be pruned
    n_jobs: int = Field(2, ge=1)  # forest fitting threads (Optuna itself always runs 1 trial at a time)
    seed: int | None = None  # None: the top-level `seed`
    search: SearchSpace = SearchSpace()
    optuna_plots: bool = True  # one self-contained HTML of the study's plots on the parent run
    # Scale (README "Training at scale"): the cost of tuning and fitting does not grow with the rows.
    # Each tree draws min(round(max_samples x rows), max_samples_rows) rows (max_samples: the
    # searched fraction), in the CV folds, the learning curve and the final refit alike.
    max_samples_rows: int = Field(100_000, ge=1)
    # Optuna tunes on at most this many rows of the training window: a seeded sample stratified
    # on (calendar month, label), in date order, cut into the same time-ordered folds (cv_gap_days).
    tune_max_rows: int = Field(30_000, ge=100)
    # Learning curve (best params, validation window) at this many log-spaced training sizes from
    # learning_curve_min_rows up to learning_curve_max_rows (null: the whole training window); 0: off.
    learning_curve_points: int = Field(5, ge=0)
    learning_curve_min_rows: int = Field(2_000, ge=100)
    learning_curve_max_rows: int | None = Field(None, ge=100)
    learning_curve_tolerance: float = Field(0.002, ge=0)  # ROC-AUC within this of the best = plateau

    @model_validator(mode="after")
    def _windows(self) -> TrainParams:
        if not self.train_end < self.valid_end:
            raise ValueError(f"train_end ({self.train_end}) must be before valid_end ({self.valid_end})")
        return self


class EvaluateParams(Strict):
    lace_cutoff: int = Field(10, ge=0)  # LACE >= cutoff flags high risk (van Walraven 2010)
    calibration_bins: int = Field(10, ge=2)
    calibration_strategy: Literal["uniform", "quantile"] = "quantile"
    permutation_repeats: int = Field(5, ge=1)
    permutation_scoring: Literal["roc_auc", "average_precision"] = "average_precision"
    # Permutation importance costs (features x repeats) predictions of the rows it uses: above this
    # many test rows it runs on a seeded (month x label)-stratified sample of them (region scale).
    permutation_max_rows: int = Field(50_000, ge=1_000)
    max_curve_points: int = Field(200, ge=10)  # per model, in reports/plots/*.csv
    logreg_c: float = Field(1.0, gt=0)
    logreg_max_iter: int = Field(2000, ge=100)
    n_jobs: int = Field(2, ge=1)
    png: bool = True  # static PNGs of the main figures through kaleido
    log_to_mlflow: bool = True  # figures + test metrics on the model's MLflow run and version


class PromoteParams(Strict):
    """params.yaml section `promote`."""

    # The challenger may be this much (absolute recall, at its own threshold) below the champion.
    objective_tolerance: float = Field(0.01, ge=0, le=1)
    # Fairness gate: min / max recall across departments (monitoring.json) must reach this.
    min_department_recall_ratio: float = Field(0.8, ge=0, le=1)
    # How: "ci_upper" refuses a ratio significantly below it (the 95% bootstrap upper bound < it; with
    # ~100 readmissions per department, min / max of 8 equal recalls is under 0.8 about 3 times in 10);
    # "point" compares the estimate. Without an interval in monitoring.json the estimate is used.
    fairness_rule: Literal["ci_upper", "point"] = "ci_upper"
    # department_recall_ratio null (fewer than 2 departments above the suppression threshold):
    # false refuses the challenger, true lets the fairness gate pass with a recorded reason.
    allow_missing_fairness: bool = False
    require_beats_lace: bool = True  # the very first model must beat LACE at the precision floor
    refuse_f2_fallback: bool = True  # refuse a version whose threshold missed the floor on validation
    # How the test precision is held to train.min_precision. The threshold is chosen on the validation
    # window, so the test precision of a model exactly at the floor falls below it about half the time:
    # "wilson_upper" refuses only a precision significantly below the floor (the 95% Wilson upper
    # bound < floor); "point" compares the point estimate.
    precision_floor_rule: Literal["wilson_upper", "point"] = "wilson_upper"
    champion_alias: str = Field("champion", min_length=1)
    previous_alias: str = Field("previous", min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> PromoteParams:
        if self.champion_alias == self.previous_alias:
            raise ValueError("champion_alias and previous_alias must differ")
        return self

