"""Written findings, generated from the numbers (nothing about a department is hard-coded).

Each finding is HTML whose numbers are `Metric` spans (data-metric / data-value), so the browser
test can check them against the marts. `headline()` gathers the same numbers for the stage's
return value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.dashboard.data import DeptStat, WarehouseNumbers, group_label
from pipelines.dashboard.fmt import MASKED_TEXT, Metric, esc, euros, integer, number, pct, signed_pct
from pipelines.dashboard.inputs import Inputs


@dataclass(frozen=True)
class Finding:
    topic: str  # css class / data-topic
    html: str


def dept_metrics(d: DeptStat) -> dict[str, Metric]:
    """The tagged numbers of one published department."""
    assert d.rate is not None
    assert d.ci is not None
    assert d.ratio is not None
    assert d.ratio_ci is not None
    extra = {"department": d.code}
    return {
        "rate": Metric(f"department_rate_{d.code}", d.rate, pct(d.rate), extra),
        "rate_ci_low": Metric(f"department_rate_{d.code}_ci_low", d.ci[0], pct(d.ci[0]), extra),
        "rate_ci_high": Metric(f"department_rate_{d.code}_ci_high", d.ci[1], pct(d.ci[1]), extra),
        "excess": Metric(f"department_excess_{d.code}", d.ratio - 1, signed_pct(d.ratio - 1), extra),
        "excess_ci_low": Metric(f"department_excess_{d.code}_ci_low", d.ratio_ci[0] - 1,
                                signed_pct(d.ratio_ci[0] - 1), extra),
        "excess_ci_high": Metric(f"department_excess_{d.code}_ci_high", d.ratio_ci[1] - 1,
                                 signed_pct(d.ratio_ci[1] - 1), extra),
        "ratio": Metric(f"department_ratio_{d.code}", d.ratio, number(d.ratio, 2), extra),
        "ratio_ci_low": Metric(f"department_ratio_{d.code}_ci_low", d.ratio_ci[0], number(d.ratio_ci[0], 2), extra),
        "ratio_ci_high": Metric(f"department_ratio_{d.code}_ci_high", d.ratio_ci[1], number(d.ratio_ci[1], 2), extra),
        **standardised_metrics(d),
    }


def standardised_metrics(d: DeptStat) -> dict[str, Metric]:
    """The standardised ratio (observed / expected under the region's case mix) and its CI."""
    if d.standardised_ratio is None or d.standardised_ratio_ci is None or d.expected is None:
        return {}
    extra = {"department": d.code}
    sir, (lo, hi) = d.standardised_ratio, d.standardised_ratio_ci
    return {
        "expected": Metric(f"department_expected_{d.code}", d.expected, number(d.expected, 1), extra),
        "sir": Metric(f"department_standardised_ratio_{d.code}", sir, number(sir, 2), extra),
        "sir_ci_low": Metric(f"department_standardised_ratio_{d.code}_ci_low", lo, number(lo, 2), extra),
        "sir_ci_high": Metric(f"department_standardised_ratio_{d.code}_ci_high", hi, number(hi, 2), extra),
    }


def _region_metrics(w: WarehouseNumbers) -> dict[str, Metric]:
    k = w.kpis
    lo, hi = k.ci if k.ci else (None, None)
    return {
        "rate": Metric("readmission_rate", k.rate, pct(k.rate, missing=MASKED_TEXT)),
        "ci_low": Metric("readmission_rate_ci_low", lo, pct(lo, missing=MASKED_TEXT)),
        "ci_high": Metric("readmission_rate_ci_high", hi, pct(hi, missing=MASKED_TEXT)),
        "index_stays": Metric("index_stays", k.index_stays, integer(k.index_stays)),
        "readmissions": Metric("readmissions", k.readmissions, integer(k.readmissions, missing=MASKED_TEXT)),
    }


def _department_findings(w: WarehouseNumbers) -> list[Finding]:
    region = _region_metrics(w)
    out: list[Finding] = []
    flagged = [d for d in w.departments if d.verdict in ("above", "below")]
    flagged.sort(key=lambda d: (-abs((d.ratio or 1.0) - 1), d.code))
    for d in flagged:
        m = dept_metrics(d)
        word = "above" if d.verdict == "above" else "below"
        poverty = (f" Poverty rate {d.poverty_rate:.1f}%." if d.poverty_rate is not None else "")
        adjusted = ""
        if "sir" in m:
            adjusted = (f" After case-mix adjustment (age, sex, diagnosis group, Charlson): standardised ratio "
                        f"{m['sir'].html()} (95% CI {m['sir_ci_low'].html()} to {m['sir_ci_high'].html()}), "
                        f"observed {integer(d.readmissions)} vs {m['expected'].html()} expected.")
        out.append(Finding(
            f"department {word}",
            f"<strong>Department {esc(d.code)} ({esc(d.name)})</strong>: {m['excess'].html()} vs the regional "
            f"average (95% CI {m['excess_ci_low'].html()} to {m['excess_ci_high'].html()}, patient-clustered): "
            f"{m['rate'].html()} of index stays readmitted within 30 days vs {region['rate'].html()} "
            f"region-wide, significantly {word}.{adjusted}{esc(poverty)}",
        ))
    if not flagged:
        out.append(Finding("department", "No department's readmission rate differs significantly from the "
                                         "regional average (every 95% CI of the ratio contains 1)."))
    return out


def _poverty_finding(w: WarehouseNumbers) -> list[Finding]:
    r = w.poverty_correlation
    if r is None:
        return []
    n = sum(1 for d in w.departments if d.rate is not None and d.poverty_rate is not None)
    if r >= 0.5:
        how = "rise with"
    elif r <= -0.5:
        how = "fall as"
    else:
        how = "show no clear relation with"
    metric = Metric("poverty_correlation", r, number(r, 2))
    return [Finding("poverty", f"Across the {n} departments, readmission rates {how} the poverty rate "
                               f"(Pearson r = {metric.html()}; descriptive, not causal).")]


def _cost_findings(w: WarehouseNumbers) -> list[Finding]:
    diag = w.diagnoses
    out: list[Finding] = []
    shown = [g for g in diag.cost_groups if not g.suppressed and g.share is not None]
    if shown:
        top = max(shown, key=lambda g: (g.share or 0.0, g.group))
        share = Metric(f"cost_share_top_{top.group}", top.share, pct(top.share, 0), {"group": top.group})
        threshold = Metric("cost_top_threshold", diag.cost_tile.threshold_euros, euros(diag.cost_tile.threshold_euros))
        size = 100 // diag.cost_tile.ntiles
        out.append(Finding(
            "cost",
            f"<strong>{esc(group_label(top.group))} ({esc(top.group)})</strong>: {share.html()} of cost among the "
            f"costliest {size}% of index stays (episodes of {threshold.html()} or more).",
        ))
    if diag.by_cost:
        d = diag.by_cost[0]
        share = Metric(f"diagnosis_cost_share_{d.category}", d.cost_share, pct(d.cost_share), {"category": d.category})
        cost = Metric(f"diagnosis_cost_{d.category}", d.cost, euros(d.cost), {"category": d.category})
        out.append(Finding(
            "diagnosis",
            f"Costliest diagnosis: <strong>{esc(d.category)} {esc(d.label)}</strong>, {cost.html()} "
            f"({share.html()} of the cost of all index stays).",
        ))
    if diag.by_readmissions:
        d = diag.by_readmissions[0]
        extra = {"category": d.category}
        x = Metric(f"diagnosis_readmissions_{d.category}", d.readmissions, integer(d.readmissions), extra)
        rate = Metric(f"diagnosis_rate_{d.category}", d.rate, pct(d.rate), extra)
        out.append(Finding(
            "diagnosis",
            f"Most readmissions: <strong>{esc(d.category)} {esc(d.label)}</strong>, {x.html()} readmissions "
            f"({rate.html()} of its index stays).",
        ))
    return out


def _trend_finding(w: WarehouseNumbers) -> list[Finding]:
    t = w.trend
    if t.recent_rate is None or t.previous_rate is None or t.recent_span is None or t.previous_span is None:
        return []
    recent = Metric("trend_recent_rate", t.recent_rate, pct(t.recent_rate))
    previous = Metric("trend_previous_rate", t.previous_rate, pct(t.previous_rate))
    change = t.recent_rate - t.previous_rate
    direction = "up" if change > 0 else "down" if change < 0 else "unchanged"
    span = (f"{t.recent_span[0]:%b %Y}–{t.recent_span[1]:%b %Y}", f"{t.previous_span[0]:%b %Y}–"
            f"{t.previous_span[1]:%b %Y}")
    return [Finding("trend", f"Trend: {recent.html()} over the last {t.recent_months} published months "
                             f"({esc(span[0])}) vs {previous.html()} the {t.recent_months} months before "
                             f"({esc(span[1])}), {direction} {abs(100 * change):.1f} points.")]


def _model_findings(inputs: Inputs) -> list[Finding]:
    out: list[Finding] = []
    ev = inputs.evaluate.data or {}
    rf = ev.get("rf")
    if isinstance(rf, dict):
        flagged = Metric("model_flagged_share", rf.get("flagged_share"), pct(rf.get("flagged_share")))
        recall = Metric("model_recall", rf.get("recall"), pct(rf.get("recall")))
        precision = Metric("model_precision", rf.get("precision"), pct(rf.get("precision")))
        parts = [f"The model flags {flagged.html()} of discharged index stays and catches {recall.html()} of "
                 f"30-day readmissions at {precision.html()} precision (test window)"]
        lace = ev.get("lace")
        if isinstance(lace, dict) and rf.get("roc_auc") is not None and lace.get("roc_auc") is not None:
            auc = Metric("model_roc_auc", rf["roc_auc"], number(rf["roc_auc"]))
            lace_auc = Metric("lace_roc_auc", lace["roc_auc"], number(lace["roc_auc"]))
            parts.append(f"; ROC-AUC {auc.html()} vs {lace_auc.html()} for the LACE index")
        out.append(Finding("model", "".join(parts) + "."))
    fair = inputs.fairness.data
    dept = (fair or {}).get("groups", {}).get("department") if fair else None
    if isinstance(dept, dict):
        parity = (dept.get("parity") or {}).get("recall") or {}
        ratio = parity.get("ratio")
        if ratio is not None:
            screen = (fair or {}).get("four_fifths") or {}
            threshold = screen.get("threshold", 0.8)
            check = ((screen.get("checks") or {}).get("department") or {}).get("recall") or {}
            passes = check.get("passes") if isinstance(check.get("passes"), bool) else ratio >= threshold
            verdict = "passes" if passes else "falls below"
            out.append(Finding(
                "fairness",
                f"Recall by department ranges from {pct(parity.get('min'))} ({esc(parity.get('min_group'))}) to "
                f"{pct(parity.get('max'))} ({esc(parity.get('max_group'))}): parity ratio "
                f"{Metric('fairness_department_recall_ratio', ratio, number(ratio, 2)).html()}, which {verdict} the "
                f"{threshold:.0%} screening rule (a heuristic, not a legal test).",
            ))
    drift = inputs.drift.data
    dataset = ((drift or {}).get("data_drift") or {}).get("dataset") if drift else None
    if isinstance(dataset, dict) and dataset.get("n_columns"):
        drifted = Metric("drift_n_drifted_columns", dataset.get("n_drifted_columns"),
                         integer(dataset.get("n_drifted_columns")))
        verdict = "dataset drift detected" if dataset.get("drifted") else "no dataset drift"
        out.append(Finding("drift", f"Drift: {drifted.html()} of {integer(dataset.get('n_columns'))} features "
                                    f"drifted between the training and the monitored window ({verdict})."))
    promo = inputs.promotion.data
    if promo:
        version = promo.get("champion_version")
        champion = Metric("champion_version", None if version is None else str(version),
                          "none" if version is None else f"v{version}")
        decision = str(promo.get("decision", "unknown"))
        challenger = promo.get("challenger_version")
        out.append(Finding("promotion", f"Champion model: {champion.html()}; last decision on challenger "
                                        f"{'none' if challenger is None else 'v' + esc(challenger)}: "
                                        f"<strong>{esc(decision)}</strong>."))
    return out


def findings(w: WarehouseNumbers, inputs: Inputs) -> list[Finding]:
    region = _region_metrics(w)
    if w.kpis.rate is None:
        first = Finding("region", f"<strong>Île-de-France</strong>: {region['index_stays'].html()} index stays; "
                                  f"the readmission figures are masked (fewer than {w.min_cell} readmitted patients).")
        return [first, *_cost_findings(w), *_model_findings(inputs)]
    first = Finding(
        "region",
        f"<strong>Île-de-France</strong>: {region['rate'].html()} of {region['index_stays'].html()} index stays "
        f"were followed by an unplanned readmission within 30 days (95% CI {region['ci_low'].html()} to "
        f"{region['ci_high'].html()}).",
    )
    return [first, *_department_findings(w), *_poverty_finding(w), *_cost_findings(w), *_trend_finding(w),
            *_model_findings(inputs)]


def headline(w: WarehouseNumbers, inputs: Inputs) -> dict[str, Any]:
    """The stage's return value: the page's key numbers (rounded for printing)."""

    def r(v: float | None, digits: int = 4) -> float | None:
        return None if v is None or math.isnan(v) else round(v, digits)

    k = w.kpis
    standouts = {
        d.code: {"rate": r(d.rate), "ratio": r(d.ratio, 3), "ratio_ci95": [r(v, 3) for v in d.ratio_ci or ()],
                 "standardised_ratio": r(d.standardised_ratio, 3),
                 "standardised_ratio_ci95": [r(v, 3) for v in d.standardised_ratio_ci or ()],
                 "verdict": d.verdict}
        for d in w.departments if d.verdict in ("above", "below")
    }
    top_group = max((g for g in w.diagnoses.cost_groups if not g.suppressed),
                    key=lambda g: (g.share or 0.0, g.group), default=None)
    out: dict[str, Any] = {
        "stays": k.stays, "patients": k.patients, "index_stays": k.index_stays, "readmissions": k.readmissions,
        "readmission_rate": r(k.rate), "readmission_rate_ci95": [r(v) for v in k.ci or ()],
        "total_cost_euros": round(k.total_cost, 2),
        "departments_vs_region": standouts,
        "top_cost_group": None if top_group is None else {"group": top_group.group, "share": r(top_group.share)},
        "suppressed_cells": {
            "department_month": sum(1 for c in w.trend.cells if c.suppressed),
            "diagnosis_categories": w.diagnoses.suppressed_categories,
            "hospitals": sum(1 for h in w.hospitals if h.suppressed),
        },
        "sections_without_input": sorted({i.name for i in (inputs.evaluate, inputs.fairness, inputs.drift,
                                                           inputs.promotion, inputs.model_meta) if not i.ok}),
    }
    return out
