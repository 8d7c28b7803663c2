"""Promotion gate and rollback, on tiny MLflow stores in tmp_path.

One forest is fitted once per module on the synthetic mart (tests/support/feature_fixtures.py); each test
registers versions of it in its own store, through the same pyfunc code and signature as `train`,
with chosen thresholds (a lower recall, a precision under the floor, ...), tags like `train`'s and
the stage inputs `promote` reads (model_meta.json, evaluate.json, monitoring.json, fairness.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from pipelines.config import Params, Paths, PromoteParams
from pipelines.model import data as fdata
from pipelines.model import tracking
from pipelines.model.artifacts import META_FILE, ModelBundle, ModelMeta, write_bundle, write_meta
from pipelines.model.preprocessing import forest_pipeline, set_forest_jobs
from pipelines.model.pyfunc_model import predict_frame
from pipelines.model.thresholds import RULE_F2, RULE_FLOOR, recall_at_precision
from pipelines.model.tracking import version_by_alias
from pipelines.promote import PromoteError, evaluate_gates, rollback, run_promote
from pipelines.train import PYFUNC_CODE, model_signature
from tests.support.feature_fixtures import write_fixture

pytestmark = pytest.mark.filterwarnings("ignore:.*An input example was not provided:UserWarning")

NAME = "idf-readmission-rf"
TRAIN_END, VALID_END = date(2023, 10, 1), date(2024, 4, 1)
FLOOR = 0.25


@dataclass(frozen=True)
class Base:
    features: Path
    pipeline: Any
    threshold: float  # a good operating point: precision >= 0.28 on the test window
    p_test: np.ndarray  # probabilities on the test window (discharge >= VALID_END)
    y_test: np.ndarray

    def recall_precision(self, threshold: float) -> tuple[float, float]:
        flag = self.p_test >= threshold
        tp = int((flag & (self.y_test == 1)).sum())
        return tp / int(self.y_test.sum()), tp / max(int(flag.sum()), 1)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("promote-base")
    features, _ = write_fixture(root, n_rows=3000, seed=11)
    split = fdata.temporal_split(fdata.load_features(Paths(root)), TRAIN_END, VALID_END,
                                 gap_days=Params().warehouse.readmission_window_days)
    hp = {"n_estimators": 30, "max_depth": 6, "min_samples_leaf": 20, "max_features": "sqrt", "max_samples": 0.9}
    pipeline = forest_pipeline(hp, 7, 1).fit(fdata.to_model_input(split.train), fdata.labels(split.train))
    set_forest_jobs(pipeline, 1)
    bundle = ModelBundle(pipeline, 0.5, tuple(fdata.NUMERIC), tuple(fdata.CATEGORICAL))
    p_test = predict_frame(bundle, fdata.to_model_input(split.test))["probability"].to_numpy()
    y_test = fdata.labels(split.test)
    # The operating threshold of the "good" versions: the most recall at precision >= 0.28 on the
    # test window (a margin over the floor, so the tests control which gate decides).
    point = recall_at_precision(y_test, p_test, FLOOR + 0.03)
    assert point is not None, "fixture: the forest reaches precision 0.28 on the test window"
    return Base(features, pipeline, point.threshold, p_test, y_test)


class Store:
    """A project root with its own MLflow store; registers versions and writes the stage's inputs."""

    def __init__(self, root: Path, base: Base) -> None:
        self.root, self.base, self.paths = root, base, Paths(root)
        target = fdata.features_path(self.paths)
        target.parent.mkdir(parents=True)
        target.write_bytes(base.features.read_bytes())
        self.client = tracking.connect(self.paths)
        self.experiment_id = tracking.ensure_experiment(self.client, self.paths, "promote-tests")

    def params(self, **promote: Any) -> Params:
        return Params.model_validate({
            "train": {"model_name": NAME, "min_precision": FLOOR, "train_end": TRAIN_END.isoformat(),
                      "valid_end": VALID_END.isoformat()},
            "promote": promote,
        })

    def register(self, threshold: float, rule: str = RULE_FLOOR, ratio: float | None = 0.9,
                 valid_end: date = VALID_END) -> str:
        """A new registered version of the base forest at `threshold`; it becomes the stage's challenger."""
        tracking.connect(self.paths)
        bundle_file = self.root / "bundle.joblib"
        write_bundle(bundle_file, ModelBundle(self.base.pipeline, float(threshold), tuple(fdata.NUMERIC),
                                              tuple(fdata.CATEGORICAL)))
        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                           artifacts={"bundle": str(bundle_file)}, signature=model_signature(),
                                           registered_model_name=NAME, pip_requirements=["mlflow"])
        version = str(info.registered_model_version)
        tags = {"threshold": f"{threshold:.6f}", "threshold_rule": rule, "min_precision": str(FLOOR),
                "train_end": TRAIN_END.isoformat(), "valid_end": valid_end.isoformat(), "run_id": run.info.run_id}
        for key, value in tags.items():
            self.client.set_model_version_tag(NAME, version, key, value)
        self.challenge(version, ratio)
        return version

    def challenge(self, version: str, ratio: float | None = 0.9) -> None:
        """Point the stage inputs at `version`, as train / evaluate / monitor would."""
        self.write_meta(version)
        self._write(self.paths.metrics / "evaluate.json", {"model_version": version})
        self._write(self.paths.metrics / "monitoring.json", {"department_recall_ratio": ratio})
        self._write(self.paths.reports / "monitoring" / "fairness.json", {"model": {"version": version}})

    def write_meta(self, version: str) -> None:
        """models/model_meta.json as train writes it (promote reads the name and version)."""
        self.paths.models.mkdir(parents=True, exist_ok=True)
        write_meta(self.paths.models / META_FILE, ModelMeta(
            model_name=NAME, version=version, model_uri=f"models:/{NAME}/{version}", experiment="exp",
            threshold=0.5, threshold_rule=RULE_FLOOR, min_precision=FLOOR, numeric_features=tuple(fdata.NUMERIC),
            categorical_features=tuple(fdata.CATEGORICAL), train_end=TRAIN_END, valid_end=VALID_END,
            best_params={}, seed=0, features_md5="md5"))

    @staticmethod
    def _write(path: Path, payload: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload), encoding="utf-8")

    def alias(self, alias: str) -> str | None:
        mv = version_by_alias(self.client, NAME, alias)
        return None if mv is None else str(mv.version)

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(NAME, version).tags)

    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.paths.reports / "promotion.json").read_text(encoding="utf-8"))
        return data


@pytest.fixture
def store(tmp_path: Path, base: Base) -> Store:
    return Store(tmp_path, base)


def _threshold_for_recall(base: Base, target: float) -> float:
    """The highest threshold whose test recall is at least `target`."""
    positives = np.sort(base.p_test[base.y_test == 1])[::-1]
    return float(positives[int(np.ceil(target * positives.size)) - 1])


# ---- first model ------------------------------------------------------------------------------

def test_first_model_is_promoted_when_it_beats_lace(store: Store) -> None:
    version = store.register(store.base.threshold)
    summary = run_promote(store.paths, store.params())
    assert summary["decision"] == "promoted", summary["reasons"]
    assert (store.alias("champion"), store.alias("previous")) == (version, None)
    report = store.report()
    assert report["champion_version"] == version
    assert report["previous_version"] is None
    assert report["gates"]["beats_lace"]["passed"]
    challenger, lace = report["metrics"]["challenger"], report["metrics"]["lace"]
    assert challenger["precision"] >= FLOOR
    assert lace["at_precision_floor"] is None or challenger["recall"] > lace["at_precision_floor"]["recall"]
    recall, precision = store.base.recall_precision(store.base.threshold)
    assert challenger["recall"] == pytest.approx(recall, abs=1e-6)
    assert challenger["precision"] == pytest.approx(precision, abs=1e-6)
    tags = store.tags(version)
    assert tags["promotion_decision"] == "promoted"
    assert tags["promotion_compared_with"] == "none (first model)"
    assert "beats_lace" in tags["promotion_reasons"]

    # Re-run: the challenger already is the champion; the file is stable (sorted keys, no timestamps).
    text = (store.paths.reports / "promotion.json").read_text()
    assert text == json.dumps(report, indent=2, sort_keys=True) + "\n"
    again = run_promote(store.paths, store.params())
    assert again["decision"] == "unchanged"
    first_unchanged = (store.paths.reports / "promotion.json").read_text()
    run_promote(store.paths, store.params())
    assert (store.paths.reports / "promotion.json").read_text() == first_unchanged
    assert (store.alias("champion"), store.alias("previous")) == (version, None)


def test_first_model_is_refused_when_it_does_not_beat_lace(store: Store) -> None:
    # flag only the riskiest ~5% of positives: precise, but far less recall than LACE at the floor
    threshold = _threshold_for_recall(store.base, 0.05)
    version = store.register(threshold)
    summary = run_promote(store.paths, store.params())
    report = store.report()
    lace = report["metrics"]["lace"]["at_precision_floor"]
    assert lace is not None, "fixture: LACE should reach the floor"
    assert lace["recall"] > 0.05, "fixture: LACE should reach the floor with some recall"
    assert report["gates"]["precision_floor"]["passed"], report["reasons"]
    assert summary["decision"] == "refused"
    assert not report["gates"]["beats_lace"]["passed"]
    assert any(r.startswith("FAIL beats_lace") for r in report["reasons"])
    assert store.alias("champion") is None
    assert report["champion_version"] is None
    assert store.tags(version)["promotion_decision"] == "refused"
    # the param switches the LACE gate off
    assert run_promote(store.paths, store.params(require_beats_lace=False))["decision"] == "promoted"


# ---- challenger vs champion ----------------------------------------------------------------------

def test_challenger_not_worse_is_promoted_and_previous_kept(store: Store) -> None:
    v1 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    v2 = store.register(store.base.threshold, valid_end=date(2024, 6, 1))  # same scores, later split
    summary = run_promote(store.paths, store.params())
    assert summary["decision"] == "promoted", summary["reasons"]
    assert (store.alias("champion"), store.alias("previous")) == (v2, v1)
    report = store.report()
    assert (report["champion_version"], report["previous_version"]) == (v2, v1)
    assert report["test_window"]["start"] == "2024-06-01"  # rows neither model saw
    metrics = report["metrics"]
    assert metrics["challenger"]["recall"] == metrics["champion"]["recall"]
    assert metrics["champion"]["version"] == v1
    assert store.tags(v2)["promotion_compared_with"] == v1
    old = store.tags(v1)
    assert (old["last_challenger_version"], old["last_challenge_decision"]) == (v2, "promoted")
    assert "objective" in old["last_challenge_reasons"]


def test_worse_challenger_is_refused(store: Store) -> None:
    v1 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    champion_recall, _ = store.base.recall_precision(store.base.threshold)
    worse = _threshold_for_recall(store.base, champion_recall - 0.08)
    recall, precision = store.base.recall_precision(worse)
    assert recall < champion_recall - 0.01, "fixture: a worse operating point"
    assert precision >= FLOOR, "fixture: a precise operating point"
    v2 = store.register(worse)
    summary = run_promote(store.paths, store.params())
    assert summary["decision"] == "refused"
    report = store.report()
    assert not report["gates"]["objective"]["passed"]
    assert report["gates"]["precision_floor"]["passed"]
    assert (store.alias("champion"), store.alias("previous")) == (v1, None)
    assert (report["champion_version"], report["previous_version"]) == (v1, None)
    assert store.tags(v2)["promotion_decision"] == "refused"
    assert "FAIL objective" in store.tags(v2)["promotion_reasons"]
    assert store.tags(v1)["last_challenge_decision"] == "refused"
    # a tolerance wider than the drop lets it through
    assert run_promote(store.paths, store.params(objective_tolerance=0.5))["decision"] == "promoted"
    assert (store.alias("champion"), store.alias("previous")) == (v2, v1)


def test_challenger_under_the_precision_floor_is_worse(store: Store) -> None:
    store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    low = float(np.quantile(store.base.p_test, 0.02))  # flags ~everyone: more recall, precision ~ prevalence
    recall, precision = store.base.recall_precision(low)
    assert precision < FLOOR
    assert recall > store.base.recall_precision(store.base.threshold)[0]
    store.register(low)
    assert run_promote(store.paths, store.params())["decision"] == "refused"
    gates = store.report()["gates"]
    assert not gates["precision_floor"]["passed"]
    assert not gates["objective"]["passed"]


# ---- fairness and threshold-rule gates -------------------------------------------------------------

def test_fairness_gate(store: Store) -> None:
    v1 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    v2 = store.register(store.base.threshold, ratio=0.5)
    assert run_promote(store.paths, store.params())["decision"] == "refused"
    assert "FAIL fairness: department recall ratio 0.5000 < 0.8" in store.report()["reasons"]
    store.challenge(v2, ratio=None)  # fewer than 2 departments unsuppressed
    assert run_promote(store.paths, store.params())["decision"] == "refused"
    assert "null" in store.report()["gates"]["fairness"]["detail"]
    assert store.alias("champion") == v1
    summary = run_promote(store.paths, store.params(allow_missing_fairness=True))
    assert summary["decision"] == "promoted"
    assert store.report()["gates"]["fairness"]["passed"]


def test_f2_fallback_threshold_is_refused_unless_allowed(store: Store) -> None:
    store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    store.register(store.base.threshold, rule=RULE_F2)
    assert run_promote(store.paths, store.params())["decision"] == "refused"
    assert not store.report()["gates"]["threshold_rule"]["passed"]
    assert run_promote(store.paths, store.params(refuse_f2_fallback=False))["decision"] == "promoted"


# ---- rollback -------------------------------------------------------------------------------------

def test_rollback_restores_previous_and_is_reversible(store: Store) -> None:
    v1 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    with pytest.raises(PromoteError, match="nothing to roll back to"):
        rollback(store.paths, store.params())
    v2 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    assert (store.alias("champion"), store.alias("previous")) == (v2, v1)

    result = rollback(store.paths, store.params())
    assert (store.alias("champion"), store.alias("previous")) == (v1, v2)
    assert result["champion_version"] == v1
    assert result["rolled_back_version"] == v2
    assert f"version {v1} is 'champion' again (was version {v2})" in result["message"]
    assert "rolled_back" in store.tags(v2)

    # the rolled-back version is never re-promoted by the stage
    summary = run_promote(store.paths, store.params())
    assert summary["decision"] == "refused"
    assert any(r.startswith("FAIL not_rolled_back") for r in summary["reasons"])
    assert store.alias("champion") == v1

    # a second rollback undoes the first
    rollback(store.paths, store.params())
    assert (store.alias("champion"), store.alias("previous")) == (v2, v1)
    assert "rolled_back" not in store.tags(v2)


def test_rollback_rewrites_promotion_json(store: Store) -> None:
    """The dashboard reads promotion.json: after a rollback it must name the restored champion (and DVC
    sees promote's output changed, so `dvc repro` reruns report)."""
    v1 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    v2 = store.register(store.base.threshold)
    run_promote(store.paths, store.params())
    promoted = store.report()
    assert (promoted["decision"], promoted["champion_version"]) == ("promoted", v2)
    before = (store.paths.reports / "promotion.json").read_bytes()

    rollback(store.paths, store.params())
    report = store.report()
    assert set(report) == set(promoted)  # the schema promote writes
    assert report["decision"] == "rolled_back"
    assert (report["champion_version"], report["previous_version"], report["challenger_version"]) == (v1, v2, v2)
    assert report["model_name"] == NAME
    assert report["min_precision"] == FLOOR
    assert report["reasons"] == [f"rollback: version {v2} taken out of service, version {v1} is 'champion' again"]
    assert (store.paths.reports / "promotion.json").read_bytes() != before

    # what `dvc repro` then does: promote reruns, refuses the rolled-back version, keeps the restored champion
    again = run_promote(store.paths, store.params())
    assert (again["decision"], again["champion_version"]) == ("refused", v1)
    assert store.report()["champion_version"] == v1


def test_rollback_without_champion(store: Store) -> None:
    store.register(store.base.threshold)
    with pytest.raises(PromoteError, match="no 'champion' alias"):
        rollback(store.paths, store.params())


# ---- stale or missing inputs -------------------------------------------------------------------------

def test_stale_inputs_are_refused_with_a_clear_error(store: Store) -> None:
    version = store.register(store.base.threshold)
    store._write(store.paths.metrics / "evaluate.json", {"model_version": "99"})
    with pytest.raises(PromoteError, match="evaluation is about version 99"):
        run_promote(store.paths, store.params())
    store.challenge(version)
    store._write(store.paths.reports / "monitoring" / "fairness.json", {"model": {"version": "98"}})
    with pytest.raises(PromoteError, match="monitoring is about version 98"):
        run_promote(store.paths, store.params())
    store.challenge(version)
    (store.paths.metrics / "monitoring.json").unlink()
    with pytest.raises(PromoteError, match=r"monitoring\.json: monitoring summary"):
        run_promote(store.paths, store.params())
    store.challenge(version)
    store.write_meta("97")
    store._write(store.paths.metrics / "evaluate.json", {"model_version": "97"})
    store._write(store.paths.reports / "monitoring" / "fairness.json", {"model": {"version": "97"}})
    with pytest.raises(PromoteError, match="has no version 97"):
        run_promote(store.paths, store.params())
    assert not (store.paths.reports / "promotion.json").exists()


# ---- the gate logic alone --------------------------------------------------------------------------

def _metrics(version: str, recall: float, precision: float, rule: str = RULE_FLOOR) -> dict[str, Any]:
    return {"version": version, "recall": recall, "precision": precision, "threshold_rule": rule,
            "meets_precision_floor": precision >= FLOOR}


LACE = {"at_precision_floor": {"recall": 0.4, "precision": 0.26, "cutoff": 10}}


@pytest.mark.parametrize(
    ("challenger", "champion", "passed"),
    [
        (_metrics("2", 0.60, 0.30), _metrics("1", 0.61, 0.30), True),  # within tolerance
        (_metrics("2", 0.60, 0.30), _metrics("1", 0.60 + 0.01, 0.26), True),  # exactly at the tolerance
        (_metrics("2", 0.59, 0.30), _metrics("1", 0.61, 0.30), False),
        (_metrics("2", 0.90, 0.20), _metrics("1", 0.61, 0.30), False),  # more recall, under the floor
        (_metrics("2", 0.40, 0.30), _metrics("1", 0.90, 0.20), True),  # champion misses the floor here
    ],
    ids=["within", "at-tolerance", "worse", "under-floor", "champion-under-floor"],
)
def test_objective_gate(challenger: dict[str, Any], champion: dict[str, Any], passed: bool) -> None:
    gates = evaluate_gates(PromoteParams(), FLOOR, challenger, champion, LACE, 0.9, None)
    assert gates.results["objective"]["passed"] is passed
    assert "beats_lace" not in gates.results  # LACE gates the first model only


def test_lace_gate_when_lace_never_reaches_the_floor() -> None:
    no_lace = {"at_precision_floor": None}
    ok = evaluate_gates(PromoteParams(), FLOOR, _metrics("1", 0.3, 0.3), None, no_lace, 0.9, None)
    assert ok.passed
    under = evaluate_gates(PromoteParams(), FLOOR, _metrics("1", 0.3, 0.2), None, no_lace, 0.9, None)
    assert not under.results["beats_lace"]["passed"]


@pytest.mark.parametrize(
    ("ratio", "ci", "rule", "passed", "detail"),
    [
        (0.73, (0.57, 0.81), "ci_upper", True, "0.7300 (95% CI 0.5700-0.8100) not significantly below 0.8"),
        (0.73, (0.57, 0.79), "ci_upper", False, "0.7300 (95% CI 0.5700-0.7900) significantly below 0.8"),
        (0.85, (0.70, 0.95), "ci_upper", True, "0.8500 (95% CI 0.7000-0.9500) >= 0.8"),
        (0.73, (0.57, 0.81), "point", False, "0.7300 < 0.8"),
        (0.73, None, "ci_upper", False, "0.7300 < 0.8"),  # no interval in monitoring.json: the estimate
    ],
    ids=["noise", "significant", "above", "point-rule", "no-interval"],
)
def test_fairness_gate_holds_the_ratio_to_its_interval(ratio: float, ci: tuple[float, float] | None, rule: str,
                                                       passed: bool, detail: str) -> None:
    pp = PromoteParams.model_validate({"fairness_rule": rule})
    gates = evaluate_gates(pp, FLOOR, _metrics("2", 0.60, 0.30), _metrics("1", 0.60, 0.30), LACE, ratio, None, ci)
    assert gates.results["fairness"]["passed"] is passed
    assert gates.results["fairness"]["detail"] == f"department recall ratio {detail}"


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="must differ"):
        PromoteParams(champion_alias="x", previous_alias="x")
    with pytest.raises(ValueError, match="objective_tolerance"):
        PromoteParams.model_validate({"objective_tolerance": -0.1})
    with pytest.raises(ValueError, match="unknown_knob"):
        PromoteParams.model_validate({"unknown_knob": 1})


# ---- the precision floor on the test rows -------------------------------------------------------

@pytest.mark.parametrize(
    ("tp", "flagged", "rule", "meets"),
    [
        (695, 2863, "wilson_upper", True),  # 0.2428: 95% CI 0.227-0.259 holds the 0.25 floor
        (695, 2863, "point", False),
        (600, 2863, "wilson_upper", False),  # 0.2096: significantly below the floor
        (25, 100, "point", True),  # exactly at the floor
        (0, 0, "wilson_upper", False),  # flags nobody: no precision to hold
    ],
)
def test_precision_floor_rule(tp: int, flagged: int, rule: str, meets: bool) -> None:
    from pipelines.promote import meets_precision_floor

    assert meets_precision_floor(tp, flagged, FLOOR, rule) is meets


def test_promote_fails_runs_of_a_killed_train(store: Store) -> None:
    # dvc repro may restore a killed train from its run cache: train's own cleanup never runs then
    version = store.register(store.base.threshold)
    exp = tracking.ensure_experiment(store.client, store.paths, "idf-readmission")  # train.experiment default
    killed = store.client.create_run(exp, tags={"mlflow.runName": "killed-study", "stage": "train"}).info.run_id
    run_promote(store.paths, store.params())
    assert store.client.get_run(killed).info.status == "FAILED"
    assert store.alias("champion") == version
