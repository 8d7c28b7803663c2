"""Promote stage: gate the newly registered version (challenger) against the alias `champion`.

Reads   models/model_meta.json            the challenger (the version `train` registered last)
        reports/metrics/evaluate.json     must be about the challenger (else the inputs are stale)
        reports/metrics/monitoring.json   `department_recall_ratio` (min / max recall across the
                                          unsuppressed departments of the monitored window)
        reports/monitoring/fairness.json  (when present) must be about the challenger too
        data/features/                    the test-window rows both models are scored on
        mlruns/                           the registry: versions, aliases, tags
Writes  registry aliases `champion` / `previous` (params `promote`), decision tags on the
        versions, and reports/promotion.json (sorted keys, no timestamps: a re-run with the same
        inputs writes the same bytes).

Both models are loaded from the registry (`models:/<name>/<version>`, i.e. what `serve` would
serve) and scored on the SAME rows: the feature mart's stays discharged on or after the later of
the two models' `valid_end`, so that neither model saw them in training or threshold choice.

The objective is the training objective on those rows: recall at the model's own threshold
(its `high_risk` flag) with precision >= train.min_precision. Gates, all of which must pass:
  * not rolled back: a version `rollback` took out of service is never promoted again;
  * threshold rule: with `refuse_f2_fallback`, a version whose validation threshold missed the
    precision floor (threshold_rule f2_fallback) is refused;
  * precision floor: the challenger's test precision is not significantly below min_precision
    (95% Wilson upper bound >= floor; `precision_floor_rule: point` compares the estimate itself);
  * objective: challenger recall >= champion recall - objective_tolerance (when the champion
    itself misses the floor on these rows, a challenger meeting it is better);
  * LACE (first model only, `require_beats_lace`): the challenger's recall beats LACE's best
    recall among the LACE cutoffs whose precision meets the same floor on the same rows (the
    LACE cutoff is picked on the test rows, which favours LACE: a conservative gate);
  * fairness: department_recall_ratio not significantly below min_department_recall_ratio (its
    95% bootstrap upper bound >= the minimum; `fairness_rule: point` compares the estimate) (null,
    i.e. fewer than 2 departments unsuppressed, refuses unless `allow_missing_fairness`).
Decision: "promoted" (previous <- old champion, champion <- challenger), "refused" (aliases
untouched), or "unchanged" (the challenger already is the champion: a re-run changes nothing).

`rollback` swaps the aliases back: champion <- previous, previous <- the rolled-back version,
rewrites reports/promotion.json (decision "rolled_back", same schema),
and tags the rolled-back version so that `promote` never re-promotes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import polars as pl
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.metrics import average_precision_score, roc_auc_score

from pipelines import interrupts, metrics_io
from pipelines.config import Params, Paths, PromoteParams, TrainParams
from pipelines.errors import PipelineInputError
from pipelines.metrics_io import DIGITS, rounded
from pipelines.model import data as fdata
from pipelines.model import handoffs, tracking
from pipelines.model.artifacts import META_FILE, ModelMeta, read_meta
from pipelines.model.handoffs import Evaluation
from pipelines.model.metrics import flag_metrics
from pipelines.model.thresholds import RULE_F2
from pipelines.stats import wilson_interval

log = logging.getLogger(__name__)

REPORT_FILE = "promotion.json"
ROLLED_BACK_TAG = "rolled_back"


class PromoteError(PipelineInputError, ValueError):
    """The promotion inputs are missing, stale or inconsistent (the message says which)."""


# ---- registry helpers -------------------------------------------------------------------------

def _version(mv: ModelVersion | None) -> str | None:
    return None if mv is None else str(mv.version)


# ---- metrics on the shared test window --------------------------------------------------------

@dataclass(frozen=True)
class ScoringWindow:
    start: date
    frame: pl.DataFrame

    @property
    def labels(self) -> np.ndarray:
        return fdata.labels(self.frame)

    def describe(self) -> dict[str, Any]:
        y = self.labels
        return {"start": self.start.isoformat(), "rows": int(y.size), "positives": int(y.sum())}


def scoring_window(paths: Paths, starts: list[date]) -> ScoringWindow:
    """The mart's rows discharged on or after every model's valid_end (seen by none of them)."""
    start = max(starts)
    frame = fdata.load_features(paths).filter(pl.col(fdata.DATE) >= start).sort([fdata.DATE, fdata.KEY])
    if frame.height == 0:
        raise PromoteError(f"no test-window rows: no stay discharged on or after {start} in the feature mart")
    classes = set(frame[fdata.LABEL].unique().to_list())
    if classes != {0, 1}:
        raise PromoteError(f"test window from {start} has only label value(s) {sorted(classes)}")
    return ScoringWindow(start, frame)


def meets_precision_floor(tp: int, flagged: int, min_precision: float, rule: str) -> bool:
    """Precision tp/flagged held to the floor: point estimate, or not significantly below (Wilson)."""
    if flagged <= 0:
        return False
    if rule == "point":
        return tp / flagged >= min_precision
    return wilson_interval(tp, flagged)[1] >= min_precision


def model_metrics(client: MlflowClient, name: str, version: str, window: ScoringWindow,
                  min_precision: float, rule: str = "wilson_upper") -> dict[str, Any]:
    """The registered version's pyfunc (what `serve` would serve) on the window's rows."""
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    out = model.predict(fdata.to_serving_input(window.frame))
    y = window.labels
    p = out["probability"].to_numpy(dtype="float64")
    flag = out["high_risk"].to_numpy().astype(np.int64)
    tags = client.get_model_version(name, version).tags
    metrics = flag_metrics(y, flag)
    metrics.update({
        "version": version,
        "threshold": rounded(float(tags["threshold"]), DIGITS) if "threshold" in tags else None,
        "threshold_rule": tags.get("threshold_rule"),
        "precision_ci95": [rounded(b, DIGITS) for b in wilson_interval(metrics["tp"], metrics["flagged"])],
        "meets_precision_floor": meets_precision_floor(metrics["tp"], metrics["flagged"], min_precision, rule),
        "roc_auc": rounded(roc_auc_score(y, p), DIGITS),
        "pr_auc": rounded(average_precision_score(y, p), DIGITS),
    })
    return metrics


def lace_metrics(window: ScoringWindow, min_precision: float, cutoff: int) -> dict[str, Any]:
    """LACE on the same rows: at the evaluate cutoff, and at its best cutoff meeting the floor."""
    y = window.labels
    score = window.frame["lace_score"].cast(pl.Float64).fill_null(0).to_numpy()
    best: dict[str, Any] | None = None
    for c in np.unique(score):
        m = flag_metrics(y, (score >= c).astype(np.int64))
        if m["precision"] >= min_precision and (best is None or m["recall"] > best["recall"]):
            best = {**m, "cutoff": int(c)}
    return {
        "at_cutoff": {**flag_metrics(y, (score >= cutoff).astype(np.int64)), "cutoff": cutoff},
        "at_precision_floor": best,  # None: no LACE cutoff reaches the floor on these rows
        "roc_auc": rounded(roc_auc_score(y, score), DIGITS),
        "pr_auc": rounded(average_precision_score(y, score), DIGITS),
    }


# ---- gates ------------------------------------------------------------------------------------

@dataclass
class Gates:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.results[name] = {"passed": bool(passed), "detail": detail}

    @property
    def passed(self) -> bool:
        return all(g["passed"] for g in self.results.values())

    def reasons(self) -> list[str]:
        return [f"{'pass' if g['passed'] else 'FAIL'} {name}: {g['detail']}" for name, g in self.results.items()]


def evaluate_gates(pp: PromoteParams, min_precision: float, challenger: dict[str, Any],
                   champion: dict[str, Any] | None, lace: dict[str, Any], department_ratio: float | None,
                   rolled_back: str | None, department_ratio_ci: tuple[float, float] | None = None) -> Gates:
    gates = Gates()
    if rolled_back is not None:
        gates.add("not_rolled_back", False, f"version {challenger['version']} was rolled back ({rolled_back}); "
                  "train a new version")
    rule = challenger["threshold_rule"]
    if pp.refuse_f2_fallback:
        gates.add("threshold_rule", rule != RULE_F2,
                  f"threshold_rule {rule}" + (" (no validation threshold met the precision floor)"
                                              if rule == RULE_F2 else ""))
    ci = challenger.get("precision_ci95")
    shown = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    how = "not significantly below" if pp.precision_floor_rule == "wilson_upper" else ">="
    gates.add("precision_floor", challenger["meets_precision_floor"],
              f"challenger test precision {challenger['precision']:.4f}{shown} "
              f"{how if challenger['meets_precision_floor'] else 'below'} floor {min_precision}")
    if champion is not None:
        if not champion["meets_precision_floor"]:
            gates.add("objective", challenger["meets_precision_floor"],
                      f"champion v{champion['version']} misses the precision floor on these rows "
                      f"({champion['precision']:.4f} < {min_precision}); challenger recall "
                      f"{challenger['recall']:.4f}")
        else:
            bar = champion["recall"] - pp.objective_tolerance
            ok = challenger["meets_precision_floor"] and challenger["recall"] >= bar - 1e-12
            gates.add("objective", ok,
                      f"challenger recall {challenger['recall']:.4f} {'>=' if ok else '<'} champion "
                      f"v{champion['version']} recall {champion['recall']:.4f} - tolerance {pp.objective_tolerance}")
    elif pp.require_beats_lace:
        best = lace["at_precision_floor"]
        if best is None:
            ok = challenger["meets_precision_floor"]
            detail = (f"first model: no LACE cutoff reaches precision {min_precision} on these rows; challenger "
                      f"recall {challenger['recall']:.4f} at precision {challenger['precision']:.4f}")
        else:
            ok = challenger["meets_precision_floor"] and challenger["recall"] > best["recall"]
            beats = challenger["recall"] > best["recall"]
            detail = (f"first model: challenger recall {challenger['recall']:.4f} {'>' if beats else '<='} LACE recall "
                      f"{best['recall']:.4f} (LACE >= {best['cutoff']}, precision {best['precision']:.4f}) at "
                      f"precision floor {min_precision}"
                      + ("" if challenger["meets_precision_floor"] else "; but the challenger misses the floor"))
        gates.add("beats_lace", ok, detail)
    if department_ratio is None:
        gates.add("fairness", pp.allow_missing_fairness,
                  "department_recall_ratio is null (fewer than 2 departments above the suppression threshold)"
                  + ("; allowed by promote.allow_missing_fairness" if pp.allow_missing_fairness else
                     "; set promote.allow_missing_fairness to accept"))
    elif pp.fairness_rule == "ci_upper" and department_ratio_ci is not None:
        low, high = department_ratio_ci
        ok = high >= pp.min_department_recall_ratio
        how = ("not significantly below" if department_ratio < pp.min_department_recall_ratio else ">=") if ok \
            else "significantly below"
        gates.add("fairness", ok, f"department recall ratio {department_ratio:.4f} (95% CI {low:.4f}-{high:.4f}) "
                  f"{how} {pp.min_department_recall_ratio}")
    else:
        ok = department_ratio >= pp.min_department_recall_ratio
        gates.add("fairness", ok, f"department recall ratio {department_ratio:.4f} {'>=' if ok else '<'} "
                  f"{pp.min_department_recall_ratio}")
    return gates


# ---- inputs -----------------------------------------------------------------------------------

def _read_meta(paths: Paths) -> ModelMeta:
    try:
        return read_meta(paths.models / META_FILE)
    except PipelineInputError as exc:  # missing or unreadable: promote's own error, same message
        raise PromoteError(str(exc)) from None


def read_department_ratio(paths: Paths, challenger_version: str) -> handoffs.MonitoringSummary:
    fairness_file = paths.reports / "monitoring" / "fairness.json"
    try:
        summary = handoffs.read_monitoring_summary(paths.metrics / "monitoring.json")
        monitored = handoffs.read_monitored_version(fairness_file) if fairness_file.exists() else None
    except PipelineInputError as exc:
        raise PromoteError(str(exc)) from None
    if monitored is not None and monitored != challenger_version:
        raise PromoteError(f"{fairness_file}: monitoring is about version {monitored}, not the challenger "
                           f"{challenger_version} (re-run monitor)")
    return summary


def _check_evaluation(paths: Paths, challenger_version: str) -> Evaluation:
    try:
        evaluation = handoffs.read_evaluation(paths.metrics / "evaluate.json")
    except PipelineInputError as exc:
        raise PromoteError(str(exc)) from None
    if evaluation.model_version != challenger_version:
        raise PromoteError(f"{paths.metrics / 'evaluate.json'}: evaluation is about version "
                           f"{evaluation.model_version}, not the challenger {challenger_version} (re-run evaluate)")
    return evaluation


def _cross_check(evaluation: Evaluation, challenger: dict[str, Any], window: ScoringWindow,
                 valid_end: date) -> None:
    """Same rows as evaluate (no later champion window): the test figures must agree."""
    if window.start != valid_end or evaluation.rf_recall is None or evaluation.rf_precision is None:
        return
    for key, evaluated in (("recall", evaluation.rf_recall), ("precision", evaluation.rf_precision)):
        if abs(evaluated - challenger[key]) > 1e-6:
            log.warning("promote: challenger test %s %.6f differs from evaluate.json's %.6f (features changed since "
                        "evaluate?)", key, challenger[key], evaluated)


def _valid_end(mv: ModelVersion, fallback: date) -> date:
    text = mv.tags.get("valid_end")
    return date.fromisoformat(text) if text else fallback


def _write_report(paths: Paths, report: dict[str, Any]) -> None:
    metrics_io.write_json(paths.reports / REPORT_FILE, report)


# ---- the stage as steps: challenge -> registry -> compare -> swap aliases -> tag -> report ------

@dataclass(frozen=True)
class Challenge:
    """The file inputs: the version train registered last, checked against evaluate and monitor."""

    version: str
    evaluation: Evaluation
    department_ratio: float | None  # monitor's department recall ratio (None: too few departments)
    department_ratio_ci: tuple[float, float] | None = None  # its 95% bootstrap interval


@dataclass(frozen=True)
class Registry:
    """The registered versions the decision is about, before any alias moves."""

    client: MlflowClient
    challenger: ModelVersion
    champion: ModelVersion | None
    previous: ModelVersion | None


@dataclass(frozen=True)
class Comparison:
    """Challenger, champion and LACE on the shared test window, and the gates' verdicts."""

    window: ScoringWindow
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    lace: dict[str, Any]
    gates: Gates

    @property
    def decision(self) -> str:
        return "promoted" if self.gates.passed else "refused"


@dataclass(frozen=True)
class Aliases:
    champion: str | None  # the versions holding the aliases after the decision
    previous: str | None


def read_challenge(paths: Paths, tp: TrainParams) -> Challenge:
    meta = _read_meta(paths)
    if meta.model_name != tp.model_name:
        raise PromoteError(f"models/model_meta.json is about model '{meta.model_name}', params train.model_name "
                           f"is '{tp.model_name}'")
    version = meta.version
    summary = read_department_ratio(paths, version)
    return Challenge(version, _check_evaluation(paths, version), summary.department_recall_ratio,
                     summary.department_recall_ratio_ci)


def open_registry(paths: Paths, tp: TrainParams, pp: PromoteParams, version: str) -> Registry:
    if not tracking.store_exists(paths):
        raise PromoteError(f"no MLflow store at {tracking.describe_store(paths)} (models/ restored without"
                           " mlruns/?): `dvc repro --force train` rebuilds it")
    client = tracking.connect(paths)
    # train may have been restored from DVC's run cache after a kill: its cleanup never ran then
    experiment = client.get_experiment_by_name(tp.experiment)
    if experiment is not None:
        stale = tracking.mark_stale_runs(client, experiment.experiment_id)
        if stale:
            log.warning("promote: %d run(s) of a killed train marked FAILED: %s", len(stale), ", ".join(stale))
    try:
        challenger = client.get_model_version(tp.model_name, version)
    except MlflowException as exc:
        raise PromoteError(f"registered model '{tp.model_name}' has no version {version} in"
                           f" {tracking.describe_store(paths)}") from exc
    return Registry(client, challenger, tracking.version_by_alias(client, tp.model_name, pp.champion_alias),
                    tracking.version_by_alias(client, tp.model_name, pp.previous_alias))


def compare(paths: Paths, params: Params, challenge: Challenge, registry: Registry) -> Comparison:
    """Both versions' pyfuncs and LACE on the rows neither model saw; the gates on the result."""
    pp, tp = params.promote, params.train
    starts = [_valid_end(registry.challenger, tp.valid_end)]
    if registry.champion is not None:
        starts.append(_valid_end(registry.champion, tp.valid_end))
    window = scoring_window(paths, starts)
    challenger = model_metrics(registry.client, tp.model_name, challenge.version, window, tp.min_precision,
                               pp.precision_floor_rule)
    _cross_check(challenge.evaluation, challenger, window, starts[0])
    champion = (model_metrics(registry.client, tp.model_name, str(registry.champion.version), window,
                              tp.min_precision, pp.precision_floor_rule)
                if registry.champion is not None else None)
    lace = lace_metrics(window, tp.min_precision, params.evaluate.lace_cutoff)
    gates = evaluate_gates(pp, tp.min_precision, challenger, champion, lace, challenge.department_ratio,
                           registry.challenger.tags.get(ROLLED_BACK_TAG), challenge.department_ratio_ci)
    return Comparison(window, challenger, champion, lace, gates)


def swap_aliases(registry: Registry, pp: PromoteParams, name: str, version: str, promoted: bool) -> Aliases:
    """The stage's commit: previous <- old champion, champion <- challenger when promoted."""
    interrupts.checkpoint()  # the alias swap is the stage's commit: not after a swallowed Ctrl-C
    champion_mv, old_champion = registry.champion, _version(registry.champion)
    if not promoted:
        return Aliases(old_champion, _version(registry.previous))
    if champion_mv is not None:
        registry.client.set_registered_model_alias(name, pp.previous_alias, str(champion_mv.version))
    registry.client.set_registered_model_alias(name, pp.champion_alias, version)
    return Aliases(version, old_champion if champion_mv is not None else _version(registry.previous))


def tag_decision(registry: Registry, name: str, version: str, decision: str, reasons: list[str]) -> None:
    """The decision on the challenger's version, and the challenge on the incumbent's."""
    client, joined = registry.client, " | ".join(reasons)
    client.set_model_version_tag(name, version, "promotion_decision", decision)
    client.set_model_version_tag(name, version, "promotion_reasons", joined)
    client.set_model_version_tag(name, version, "promotion_compared_with",
                                 _version(registry.champion) or "none (first model)")
    if registry.champion is not None:
        incumbent = str(registry.champion.version)
        client.set_model_version_tag(name, incumbent, "last_challenger_version", version)
        client.set_model_version_tag(name, incumbent, "last_challenge_decision", decision)
        client.set_model_version_tag(name, incumbent, "last_challenge_reasons", joined)


def report_head(pp: PromoteParams, tp: TrainParams, version: str) -> dict[str, Any]:
    return {
        "model_name": tp.model_name,
        "challenger_version": version,
        "aliases": {"champion": pp.champion_alias, "previous": pp.previous_alias},
        "min_precision": tp.min_precision,
    }


def unchanged_report(pp: PromoteParams, tp: TrainParams, version: str, registry: Registry) -> dict[str, Any]:
    """reports/promotion.json when the challenger already holds the champion alias."""
    return {
        **report_head(pp, tp, version),
        "decision": "unchanged",
        "champion_version": version,
        "previous_version": _version(registry.previous),
        "reasons": [f"version {version} already holds the alias '{pp.champion_alias}'"],
        "gates": {},
        "metrics": {},
        "test_window": None,
    }


def decision_report(pp: PromoteParams, tp: TrainParams, challenge: Challenge, comparison: Comparison,
                    aliases: Aliases) -> dict[str, Any]:
    """reports/promotion.json after a comparison."""
    return {
        **report_head(pp, tp, challenge.version),
        "decision": comparison.decision,
        "champion_version": aliases.champion,
        "previous_version": aliases.previous,
        "reasons": comparison.gates.reasons(),
        "gates": comparison.gates.results,
        "metrics": {"challenger": comparison.challenger, "champion": comparison.champion, "lace": comparison.lace,
                    "department_recall_ratio": challenge.department_ratio,
                    "department_recall_ratio_ci95": (list(challenge.department_ratio_ci)
                                                     if challenge.department_ratio_ci else None)},
        "test_window": comparison.window.describe(),
    }


def run_promote(paths: Paths, params: Params) -> dict[str, Any]:
    pp, tp = params.promote, params.train
    challenge = read_challenge(paths, tp)
    version = challenge.version
    registry = open_registry(paths, tp, pp, version)
    if registry.champion is not None and str(registry.champion.version) == version:
        unchanged = unchanged_report(pp, tp, version, registry)
        _write_report(paths, unchanged)
        log.info("promote: version %s is already the champion: unchanged", version)
        return _summary(unchanged)

    comparison = compare(paths, params, challenge, registry)
    aliases = swap_aliases(registry, pp, tp.model_name, version, comparison.gates.passed)
    reasons = comparison.gates.reasons()
    tag_decision(registry, tp.model_name, version, comparison.decision, reasons)
    report = decision_report(pp, tp, challenge, comparison, aliases)
    _write_report(paths, report)
    log.info("promote: %s version %s (champion now %s, previous %s)", comparison.decision, version, aliases.champion,
             aliases.previous)
    for reason in reasons:
        log.info("promote: %s", reason)
    return _summary(report)


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("decision", "model_name", "challenger_version", "champion_version", "previous_version", "reasons")
    return {k: report[k] for k in keys}


def rollback(paths: Paths, params: Params) -> dict[str, Any]:
    """champion <- previous, previous <- the rolled-back version (so a second rollback undoes it)."""
    pp = params.promote
    tp = params.train
    name = tp.model_name
    if not tracking.store_exists(paths):
        raise PromoteError(f"no MLflow store at {tracking.describe_store(paths)}: nothing to roll back")
    client = tracking.connect(paths)
    champion_mv = tracking.version_by_alias(client, name, pp.champion_alias)
    previous_mv = tracking.version_by_alias(client, name, pp.previous_alias)
    if champion_mv is None:
        raise PromoteError(f"model '{name}' has no '{pp.champion_alias}' alias: nothing to roll back")
    if previous_mv is None:
        raise PromoteError(f"model '{name}' has no '{pp.previous_alias}' alias: nothing to roll back to "
                           f"(champion stays version {champion_mv.version})")
    out_version, in_version = str(champion_mv.version), str(previous_mv.version)
    client.set_registered_model_alias(name, pp.champion_alias, in_version)
    client.set_registered_model_alias(name, pp.previous_alias, out_version)
    client.set_model_version_tag(name, out_version, ROLLED_BACK_TAG, f"replaced by version {in_version}")
    client.set_model_version_tag(name, out_version, "promotion_decision", "rolled_back")
    if ROLLED_BACK_TAG in previous_mv.tags:  # a rollback of a rollback: the version is back in service
        client.delete_model_version_tag(name, in_version, ROLLED_BACK_TAG)
    client.set_model_version_tag(name, in_version, "promotion_decision",
                                 f"restored by rollback of version {out_version}")
    message = (f"rolled back model '{name}': version {in_version} is '{pp.champion_alias}' again "
               f"(was version {out_version}); '{pp.previous_alias}' now points to version {out_version}. "
               f"A running server keeps the model it loaded: restart `serve`.")
    log.info("%s", message)
    # promote's report, recording the rollback: the dashboard shows the restored champion, and DVC sees
    # promote's output changed, so the next `dvc repro` reruns promote (which refuses the rolled-back
    # version again) and report.
    _write_report(paths, {
        "model_name": name,
        "challenger_version": out_version,
        "aliases": {"champion": pp.champion_alias, "previous": pp.previous_alias},
        "min_precision": tp.min_precision,
        "decision": "rolled_back",
        "champion_version": in_version,
        "previous_version": out_version,
        "reasons": [f"rollback: version {out_version} taken out of service, version {in_version} is "
                    f"'{pp.champion_alias}' again"],
        "gates": {},
        "metrics": {},
        "test_window": None,
    })
    return {"model_name": name, "champion_version": in_version, "previous_version": out_version,
            "rolled_back_version": out_version, "message": message}
