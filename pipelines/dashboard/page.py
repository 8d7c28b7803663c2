"""The dashboard page: sections, styles and the single self-contained HTML document.

plotly.js is inlined once in <head>; every figure is a div + a Plotly.newPlot call with a fixed
div id (no random ids, no timestamps: same inputs, same bytes). No external URL is loaded:
no CDN, no web fonts, no map tiles. Plotly's geo subplot fetches a world topojson from its CDN
whenever a choropleth uses `locationmode`; an empty stand-in is registered under that name
before plotly.js loads, so the department geojson alone is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from pipelines.dashboard import figures as figs
from pipelines.dashboard import geo
from pipelines.dashboard.data import DeptStat, WarehouseNumbers, group_label
from pipelines.dashboard.findings import Finding, dept_metrics
from pipelines.dashboard.fmt import MASKED_TEXT, Metric, esc, euros, integer, number, pct, suppressed_text, tag_span
from pipelines.dashboard.inputs import Input, Inputs
from pipelines.figures import model as model_figs
from pipelines.figures.fairness import fairness_figure
from pipelines.figures.theme import MODEL_LABELS

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
# Names plotly.js looks up for its geo base layers (scope world/europe, 110m/50m resolution).
TOPOJSON_STANDINS = ("world_110m", "world_50m", "europe_110m", "europe_50m")

SECTIONS: tuple[tuple[str, str], ...] = (
    ("kpis", "Key figures"),
    ("findings", "Findings"),
    ("departments", "Departments"),
    ("map", "Map"),
    ("diagnoses", "Diagnoses"),
    ("trend", "Monthly trend"),
    ("model", "Model performance"),
    ("importance", "Feature importance"),
    ("fairness", "Fairness"),
    ("drift", "Drift"),
    ("promotion", "Champion model"),
)

CSS = """
:root { --navy:#1f3a5f; --ink:#2b2d42; --muted:#6c757d; --line:#e3e7ee; --bg:#f4f6fa; --above:#c8553d;
        --below:#2e86ab; --ok:#2f855a; --warn:#b7791f; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font-size:14px; line-height:1.45;
       font-family:-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif; }
header.top { background:linear-gradient(90deg,#14263f,#1f3a5f); color:#fff; padding:22px 32px 16px; }
header.top h1 { margin:0; font-size:24px; font-weight:650; letter-spacing:.2px; }
header.top .sub { margin-top:4px; color:#c9d6ea; font-size:13.5px; }
header.top .chips { margin-top:10px; display:flex; gap:8px; flex-wrap:wrap; }
.chip { background:rgba(255,255,255,.12); border:1px solid rgba(255,255,255,.18); border-radius:999px; padding:2px 10px;
        font-size:12px; color:#e8eef7; }
nav.toc { position:sticky; top:0; z-index:10; background:#fff; border-bottom:1px solid var(--line); padding:8px 32px;
          display:flex; gap:16px; flex-wrap:wrap; font-size:12.5px; }
nav.toc a { color:var(--navy); text-decoration:none; }
nav.toc a:hover { text-decoration:underline; }
main { max-width:1480px; margin:0 auto; padding:20px 32px 8px; }
section.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 20px; margin-bottom:18px;
               box-shadow:0 1px 2px rgba(16,24,40,.04); }
section.card > h2 { margin:0 0 4px; font-size:17px; color:var(--navy); }
section.card > p.lead { margin:0 0 12px; color:var(--muted); font-size:13px; }
.tiles { display:grid; grid-template-columns:repeat(auto-fit,minmax(170px,1fr)); gap:12px; }
.tile { border:1px solid var(--line); border-radius:9px; padding:12px 14px; background:#fbfcfe; }
.tile .label { font-size:11.5px; text-transform:uppercase; letter-spacing:.5px; color:var(--muted); }
.tile .value { font-size:26px; font-weight:650; color:var(--navy); margin-top:2px; white-space:nowrap; }
.tile .note { font-size:12px; color:var(--muted); margin-top:2px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
.grid3 { display:grid; grid-template-columns:1fr 1fr 1.2fr; gap:16px; }
@media (max-width: 1100px) { .grid2, .grid3 { grid-template-columns:1fr; } }
.fig { min-width:0; }
ul.findings { margin:0; padding-left:0; list-style:none; }
ul.findings li { padding:8px 12px; border-left:4px solid var(--line); margin-bottom:6px; background:#fbfcfe;
                 border-radius:0 6px 6px 0; }
ul.findings li.above { border-left-color:var(--above); }
ul.findings li.below { border-left-color:var(--below); }
ul.findings li.cost, ul.findings li.diagnosis { border-left-color:#f4a259; }
ul.findings li.region { border-left-color:var(--navy); }
.metric { font-weight:600; }
table.data { border-collapse:collapse; width:100%; font-size:12.5px; margin-top:10px; }
table.data th { text-align:left; color:var(--muted); font-weight:600; border-bottom:2px solid var(--line);
                padding:6px 8px; white-space:nowrap; }
table.data td { border-bottom:1px solid var(--line); padding:5px 8px; }
table.data td.num, table.data th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.suppressed, span.suppressed { color:#9aa1ab; font-style:italic; }
.badge { display:inline-block; border-radius:5px; padding:1px 8px; font-size:12px; font-weight:600; }
.badge.above, .badge.bad { background:#fbe9e5; color:var(--above); }
.badge.below { background:#e3f1f7; color:var(--below); }
.badge.similar { background:#eef0f3; color:#5c6570; }
.badge.good { background:#e6f4ea; color:var(--ok); }
.badge.neutral { background:#eef0f3; color:#5c6570; }
.notice { border:1px dashed #c5cad3; background:#fafbfc; border-radius:8px; padding:14px 16px; color:#4a5568; }
.note { color:var(--muted); font-size:12.5px; margin-top:8px; }
.scroll { max-height:420px; overflow:auto; border:1px solid var(--line); border-radius:6px; }
details summary { cursor:pointer; color:var(--navy); font-size:13px; margin-top:8px; }
.decision { display:flex; gap:24px; align-items:flex-start; flex-wrap:wrap; }
.decision .big { font-size:22px; font-weight:700; }
footer { max-width:1480px; margin:0 auto; padding:4px 32px 28px; color:var(--muted); font-size:12px; }
footer p { margin:4px 0; }
"""


@dataclass(frozen=True)
class Context:
    w: WarehouseNumbers
    inputs: Inputs
    findings: list[Finding]
    geojson: dict[str, Any]
    names: dict[str, str]
    points: dict[str, tuple[float, float]]
    labels: dict[str, tuple[float, float]]
    title: str
    subtitle: str
    top_features: int
    root: Path  # the project root, for notices


class FigureWriter:
    """Figures to HTML divs with stable ids (fig-<section>-<n>)."""

    def __init__(self) -> None:
        self.count = 0
        self.ids: list[str] = []

    def __call__(self, fig: go.Figure, div_id: str) -> str:
        self.count += 1
        self.ids.append(div_id)
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG,
                          default_width="100%", validate=True)
        return f'<div class="fig">{div}</div>'


def _tile(label: str, value_html: str, note_html: str = "") -> str:
    note = f'<div class="note">{note_html}</div>' if note_html else ""
    return f'<div class="tile"><div class="label">{esc(label)}</div><div class="value">{value_html}</div>{note}</div>'


def _notice(inp: Input, root: Path, what: str) -> str:
    return (f'<div class="notice stage-missing" data-stage="{esc(inp.name)}"><strong>{esc(what)} not available.'
            f"</strong> {esc(inp.notice(root))}</div>")


def _section(sid: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{sid}" class="card" data-section="{sid}"><h2>{esc(title)}</h2>{lead_html}{body}</section>'


def _f(v: Any) -> float | None:
    """A JSON number as float (None for missing / non-numbers)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if math.isnan(float(v)) else float(v)


# ---------------------------------------------------------------------------------------------
# Sections


def kpis_section(c: Context) -> str:
    k = c.w.kpis
    rate = Metric("readmission_rate", k.rate, pct(k.rate, missing=MASKED_TEXT))
    ci_lo, ci_hi = k.ci if k.ci else (None, None)
    lo = Metric("readmission_rate_ci_low", ci_lo, pct(ci_lo, missing=MASKED_TEXT))
    hi = Metric("readmission_rate_ci_high", ci_hi, pct(ci_hi, missing=MASKED_TEXT))
    tiles = [
        _tile("Hospital stays", Metric("stays", k.stays, integer(k.stays)).html(), "MCO stays, all causes"),
        _tile("Patients", Metric("patients", k.patients, integer(k.patients)).html(), "distinct patients"),
        _tile("Index stays", Metric("index_stays", k.index_stays, integer(k.index_stays)).html(),
              "eligible for the 30-day measure"),
        _tile("30-day readmission rate", rate.html(), f"95% CI {lo.html()} – {hi.html()}"),
        _tile("Readmissions", Metric("readmissions", k.readmissions, integer(k.readmissions, MASKED_TEXT)).html(),
              "unplanned, 1–30 days after discharge"),
        _tile("Total cost", Metric("total_cost", k.total_cost, euros(k.total_cost)).html(),
              f"index episodes {Metric('index_cost', k.index_cost, euros(k.index_cost)).html()}"),
    ]
    lead = (f"Period: admissions from {esc(k.first_admission)} to discharges on {esc(k.last_discharge)}. "
            f"Cells with fewer than {c.w.min_cell} patients are suppressed everywhere on this page (SNDS rule).")
    return _section("kpis", "Key figures", lead, f'<div class="tiles">{"".join(tiles)}</div>')


def findings_section(c: Context) -> str:
    items = "".join(f'<li class="{esc(f.topic)}" data-topic="{esc(f.topic)}">{f.html}</li>' for f in c.findings)
    return _section("findings", "Findings", "Generated from the numbers of this run; every figure below is "
                    "recomputed from the warehouse marts.", f'<ul class="findings">{items}</ul>')


def _dept_row(d: DeptStat, min_cell: int) -> str:
    if d.suppressed:
        cells = f'<td class="suppressed num" colspan="8" data-suppressed="true">{suppressed_text(min_cell)}</td>'
        return f'<tr data-department="{esc(d.code)}"><td>{esc(d.code)}</td><td>{esc(d.name)}</td>{cells}</tr>'
    if d.masked:
        cells = (f'<td class="num">{"" if d.poverty_rate is None else f"{d.poverty_rate:.1f}%"}</td>'
                 f'<td class="num">{integer(d.index_stays)}</td><td class="num">{integer(d.patients)}</td>'
                 f'<td class="suppressed num" colspan="5" data-masked="true">{MASKED_TEXT} '
                 f"(&lt;{min_cell} readmitted patients)</td>")
        return f'<tr data-department="{esc(d.code)}"><td>{esc(d.code)}</td><td>{esc(d.name)}</td>{cells}</tr>'
    m = dept_metrics(d)
    sir = (f'{m["sir"].html()} <span class="note">({m["sir_ci_low"].html("ci")}–{m["sir_ci_high"].html("ci")})'
           f'</span>' if "sir" in m else "")
    return (
        f'<tr data-department="{esc(d.code)}"><td>{esc(d.code)}</td><td>{esc(d.name)}</td>'
        f'<td class="num">{"" if d.poverty_rate is None else f"{d.poverty_rate:.1f}%"}</td>'
        f'<td class="num">{tag_span(f"department_index_stays_{d.code}", d.index_stays, integer(d.index_stays))}</td>'
        f'<td class="num">{tag_span(f"department_patients_{d.code}", d.patients, integer(d.patients))}</td>'
        f'<td class="num">{tag_span(f"department_readmissions_{d.code}", d.readmissions, integer(d.readmissions))}</td>'
        f'<td class="num">{m["rate"].html()} <span class="note">({m["rate_ci_low"].html("ci")}–'
        f'{m["rate_ci_high"].html("ci")})</span></td>'
        f'<td class="num">{m["ratio"].html()} <span class="note">({m["ratio_ci_low"].html("ci")}–'
        f'{m["ratio_ci_high"].html("ci")})</span></td>'
        f'<td class="num">{sir}</td>'
        f'<td><span class="badge {d.verdict}">{d.verdict}</span></td></tr>'
    )


def departments_section(c: Context, fig: FigureWriter) -> str:
    w = c.w
    bars = fig(figs.departments_figure(w.departments, w.kpis.rate, w.kpis.ci), "fig-departments")
    charts = f'<div class="grid2">{bars}{fig(figs.poverty_figure(w.departments, w.kpis.rate), "fig-poverty")}</div>'
    head = ("<tr><th>Code</th><th>Department</th><th class='num'>Poverty rate</th><th class='num'>Index stays</th>"
            "<th class='num'>Patients</th><th class='num'>Readmissions</th><th class='num'>Rate (95% CI)</th>"
            "<th class='num'>Ratio to region (95% CI)</th>"
            "<th class='num'>Standardised ratio (95% CI)</th><th>vs region</th></tr>")
    rows = "".join(_dept_row(d, w.min_cell) for d in w.departments)
    lead = ("Department of residence of the patient. A department is <em>above</em> or <em>below</em> the region "
            "when the 95% CI of its crude rate ratio to the regional rate excludes 1. Every 95% CI here is "
            "patient-clustered (a patient bootstrap: most index stays belong to patients with several, so "
            "intervals that treat stays as independent are too narrow). The standardised ratio is observed / "
            "expected readmissions, expected from the region's case mix (a logistic regression on age band, sex, "
            "diagnosis group and Charlson band, without department): 1 when the department's patients explain its "
            "rate. Colours follow the crude verdict.")
    return _section("departments", "Readmission rate by department", lead,
                    f'{charts}<table class="data" id="departments-table">{head}{rows}</table>')


def map_section(c: Context, fig: FigureWriter) -> str:
    placed = sum(1 for h in c.w.hospitals if h.hospital_id in c.points)
    lead = (f"Choropleth of the 30-day readmission rate by department of residence; {placed} hospitals drawn inside "
            "their department (the marts hold no coordinates: positions within a department are schematic), "
            "sized by beds. Hospitals with fewer than "
            f"{c.w.min_cell} patients show no activity figures.")
    body = fig(figs.map_figure(c.geojson, c.w.departments, c.w.hospitals, c.points, c.labels, c.w.min_cell), "fig-map")
    body += f'<p class="note attribution">{esc(geo.GEO_ATTRIBUTION)}.</p>'
    return _section("map", "Île-de-France map", lead, body)


def diagnoses_section(c: Context, fig: FigureWriter) -> str:
    d = c.w.diagnoses
    if not d.by_cost:
        return _section("diagnoses", "Top diagnoses", "",
                        '<div class="notice">No diagnosis has at least '
                        f"{c.w.min_cell} patients: every cell is suppressed.</div>")
    charts = (f'<div class="grid2">{fig(figs.diagnoses_cost_figure(d), "fig-diagnoses-cost")}'
              f'{fig(figs.diagnoses_readmissions_figure(d), "fig-diagnoses-readmissions")}</div>'
              f'{fig(figs.cost_tile_figure(d), "fig-cost-tile")}')
    head = ("<tr><th>ICD-10</th><th>Libellé (CIM-10)</th><th>Group</th><th class='num'>Index stays</th>"
            "<th class='num'>Patients</th><th class='num'>Readmissions</th><th class='num'>Rate</th>"
            "<th class='num'>Cost</th><th class='num'>Share of cost</th></tr>")
    seen: list[str] = []
    rows = []
    for s in [*d.by_cost, *d.by_readmissions]:
        if s.category in seen:
            continue
        seen.append(s.category)
        ex = {"category": s.category}
        numbers = [
            tag_span(f"diagnosis_index_stays_{s.category}", s.index_stays, integer(s.index_stays), extra=ex),
            tag_span(f"diagnosis_patients_{s.category}", s.patients, integer(s.patients), extra=ex),
            tag_span(f"diagnosis_readmissions_{s.category}", s.readmissions, integer(s.readmissions), extra=ex)
            if s.readmissions is not None else f'<span class="suppressed" data-masked="true">{MASKED_TEXT}</span>',
            tag_span(f"diagnosis_rate_{s.category}", s.rate, pct(s.rate), extra=ex)
            if s.rate is not None else f'<span class="suppressed" data-masked="true">{MASKED_TEXT}</span>',
            tag_span(f"diagnosis_cost_{s.category}", s.cost, euros(s.cost), extra=ex),
            tag_span(f"diagnosis_cost_share_{s.category}", s.cost_share, pct(s.cost_share), extra=ex),
        ]
        rows.append(
            f'<tr data-category="{esc(s.category)}"><td>{esc(s.category)}</td><td>{esc(s.label)}</td>'
            f"<td>{esc(group_label(s.group))}</td>" + "".join(f'<td class="num">{n}</td>' for n in numbers) + "</tr>"
        )
    groups = "".join(
        f'<tr data-group="{esc(g.group)}"><td>{esc(group_label(g.group))}</td>'
        + (f'<td class="suppressed num" colspan="3" data-suppressed="true">{suppressed_text(c.w.min_cell)}</td>'
           if g.suppressed else
           f'<td class="num">{integer(g.index_stays)}</td><td class="num">{euros(g.cost)}</td>'
           f'<td class="num">{tag_span(f"cost_share_top_{g.group}", g.share, pct(g.share), extra={"group": g.group})}'
           "</td>")
        + "</tr>"
        for g in d.cost_groups
    )
    notes = [f"Main diagnosis of the index stay, by 3-character ICD-10 category, French labels from the CIM-10 "
             f"nomenclature (seeds ref_diagnosis_groups and ref_icd10_categories). "
             f"{d.published_categories} categories published, "
             f"{d.suppressed_categories} suppressed (fewer than {c.w.min_cell} patients) and not ranked."]
    if d.unlabelled_categories:
        notes.append("No CIM-10 label in the project's seed for: " + ", ".join(d.unlabelled_categories) + ".")
    table = (f'<details open><summary>Table of the top diagnoses</summary><div class="scroll"><table class="data" '
             f'id="diagnoses-table">{head}{"".join(rows)}</table></div></details>'
             f'<details><summary>Costliest {100 // d.cost_tile.ntiles}% of index stays by diagnosis group</summary>'
             f'<table class="data" id="cost-tile-table"><tr><th>Group</th><th class="num">Index stays</th>'
             f'<th class="num">Cost</th><th class="num">Share</th></tr>{groups}</table></details>')
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    return _section("diagnoses", "Top diagnoses by cost and by readmissions", "", charts + table + note_html)


def trend_section(c: Context, fig: FigureWriter) -> str:
    t = c.w.trend
    charts = (fig(figs.trend_figure(t), "fig-trend")
              + fig(figs.trend_heatmap(t, c.names, c.w.min_cell), "fig-trend-departments"))
    depts = sorted({cell.department for cell in t.cells if cell.department is not None})
    cell = {(x.department, x.month): x for x in t.cells}
    head = "<tr><th>Month</th>" + "".join(f"<th class='num'>{esc(d)}</th>" for d in depts) + "</tr>"
    rows = []
    for m in t.months:
        tds = []
        for d in depts:
            x = cell.get((d, m))
            key = f"{d}|{m:%Y-%m}"
            if x is None:
                tds.append(f'<td class="num" data-cell="{key}"></td>')
            elif x.suppressed:
                tds.append(f'<td class="suppressed num" data-cell="{key}" data-suppressed="true">'
                           f"{suppressed_text(c.w.min_cell)}</td>")
            elif x.masked:
                tds.append(f'<td class="suppressed num" data-cell="{key}" data-masked="true">{MASKED_TEXT}</td>')
            else:
                tds.append(f'<td class="num" data-cell="{key}">'
                           f'{tag_span(f"month_rate_{d}_{m:%Y-%m}", x.rate, pct(x.rate))}</td>')
        rows.append(f"<tr><td>{m:%Y-%m}</td>{''.join(tds)}</tr>")
    n_supp = sum(1 for x in t.cells if x.suppressed)
    n_masked = sum(1 for x in t.cells if x.masked)
    partial = ", ".join(f"{m:%b %Y}" for m in t.partial_months)
    partial_note = (f" Partial months (under half their days inside the span of measurable discharges, "
                    f"{esc(c.w.kpis.first_index_discharge)} to {esc(c.w.kpis.last_index_discharge)}): {esc(partial)};"
                    " drawn apart and left out of the trend comparison." if partial else "")
    table = (f'<details><summary>Department × month table ({n_supp} suppressed, {n_masked} masked cells)</summary>'
             '<div class="scroll">'
             f'<table class="data" id="trend-table">{head}{"".join(rows)}</table></div></details>')
    lead = (f"Index stays by month of discharge. Department × month cells come from the mart agg_department_kpis; "
            f"{n_supp} cells with fewer than {c.w.min_cell} patients are suppressed and {n_masked} with 1 to "
            f"{c.w.min_cell - 1} readmitted patients have their readmission figures masked (blank in the heatmap)."
            f"{partial_note}")
    return _section("trend", "Monthly trend", lead, charts + table)


def model_section(c: Context, fig: FigureWriter) -> str:
    ev_in = c.inputs.evaluate
    if not ev_in.ok or not isinstance((ev_in.data or {}).get("rf"), dict):
        return _section("model", "Model performance", "", _notice(ev_in, c.root, "Model evaluation"))
    ev = ev_in.data or {}
    rf: Mapping[str, Any] = ev["rf"]
    meta = c.inputs.model_meta.data or {}
    version = ev.get("model_version", meta.get("version"))
    tiles = [
        _tile("ROC-AUC", Metric("model_roc_auc", _f(rf.get("roc_auc")), number(_f(rf.get("roc_auc")))).html(),
              f"LACE {number(_f((ev.get('lace') or {}).get('roc_auc')))}"),
        _tile("PR-AUC", Metric("model_pr_auc", _f(rf.get("pr_auc")), number(_f(rf.get("pr_auc")))).html(),
              f"prevalence {pct(_f(rf.get('prevalence')))}"),
        _tile("Recall", Metric("model_recall", _f(rf.get("recall")), pct(_f(rf.get("recall")))).html(),
              "readmissions caught"),
        _tile("Precision", Metric("model_precision", _f(rf.get("precision")), pct(_f(rf.get("precision")))).html(),
              "flagged stays readmitted"),
        _tile("Threshold", Metric("model_threshold", _f(rf.get("threshold")), number(_f(rf.get("threshold")))).html(),
              f"model v{esc(version)}"),
    ]
    parts = [f'<div class="tiles">{"".join(tiles)}</div>']
    counts = [rf.get(k) for k in ("tn", "fp", "fn", "tp")]
    charts = []
    if all(isinstance(v, int) for v in counts):
        tn, fp, fn, tp = (int(v) for v in counts)  # type: ignore[arg-type]
        confusion = model_figs.confusion_figure(tn, fp, fn, tp, c.w.min_cell, _f(rf.get("threshold")))
        charts.append(fig(confusion, "fig-confusion"))
        charts.append(fig(model_figs.classification_report_figure(tn, fp, fn, tp), "fig-classification-report"))
    pr_aucs = {m: _f((ev.get(m) or {}).get("pr_auc")) for m in ("rf", "logreg", "lace", "oracle")
               if isinstance(ev.get(m), dict)}
    lace = ev.get("lace")
    points = model_figs.operating_points(rf, lace if isinstance(lace, dict) else {})
    charts.append(fig(model_figs.pr_figure(c.inputs.pr_curves, {k: v for k, v in pr_aucs.items() if v is not None},
                                  _f(rf.get("prevalence")), points), "fig-pr"))
    parts.append(f'<div class="grid3">{"".join(charts)}</div>')
    head = ("<tr><th>Model</th><th class='num'>ROC-AUC</th><th class='num'>PR-AUC</th><th class='num'>Recall</th>"
            "<th class='num'>Precision</th><th class='num'>Flagged share</th></tr>")
    rows = ""
    for m in ("rf", "logreg", "lace", "oracle"):
        r = ev.get(m)
        if not isinstance(r, dict):
            continue
        rows += (f"<tr><td>{esc(MODEL_LABELS[m])}</td><td class='num'>{number(_f(r.get('roc_auc')))}</td>"
                 f"<td class='num'>{number(_f(r.get('pr_auc')))}</td><td class='num'>{pct(_f(r.get('recall')))}</td>"
                 f"<td class='num'>{pct(_f(r.get('precision')))}</td>"
                 f"<td class='num'>{pct(_f(r.get('flagged_share')))}</td></tr>")
    parts.append(f'<table class="data" id="model-table">{head}{rows}</table>')
    window = ev.get("test_window_start")
    lead = (f"Random Forest v{esc(version)} on the untouched test window (discharges from {esc(window)}, "
            f"{integer(ev.get('test_rows'))} index stays), against the LACE index, a logistic regression and the "
            "Bayes oracle (the simulator's true probabilities: the ceiling). Confusion cells under "
            f"{c.w.min_cell} are shown as &lt;{c.w.min_cell}.")
    return _section("model", "Model performance", lead, "".join(parts))


def importance_section(c: Context, fig: FigureWriter) -> str:
    ev = c.inputs.evaluate.data or {}
    imp = ev.get("permutation_importance")
    if not c.inputs.evaluate.ok or not isinstance(imp, dict) or not imp:
        return _section("importance", "Feature importance", "", _notice(c.inputs.evaluate, c.root,
                                                                        "Feature importance"))
    values = {str(k): float(v) for k, v in imp.items() if _f(v) is not None}
    lead = ("Permutation importance on the test window, through the whole pipeline (original columns): how much "
            "the score drops when a column is shuffled. Features are only what is known at discharge.")
    return _section("importance", "Feature importance", lead, fig(model_figs.importance_figure(values, c.top_features),
                                                                  "fig-importance"))


FAIRNESS_TITLE = "Model recall, precision and selection rate by department (monitored window)"


def _fair_rows(block: Mapping[str, Any], min_cell: int) -> list[dict[str, Any]]:
    rows = []
    for r in block.get("groups") or []:
        if not isinstance(r, dict):
            continue
        patients = r.get("patients")
        suppressed = bool(r.get("suppressed")) or not isinstance(patients, int) or patients < min_cell
        rows.append({**r, "suppressed": suppressed})
    return rows


def _fair_rate(row: Mapping[str, Any], key: str) -> str:
    """A rate cell; one the monitor stage masked (it rests on a count under the threshold) says so."""
    value = _f(row.get(key))
    if value is None and row.get("small_counts_masked"):
        return '<td class="suppressed num" data-masked="true">masked</td>'
    return f'<td class="num">{pct(value)}</td>'


def fairness_section(c: Context, fig: FigureWriter) -> str:
    inp = c.inputs.fairness
    fair = inp.data
    if not inp.ok or not isinstance((fair or {}).get("groups"), dict):
        return _section("fairness", "Fairness by department", "", _notice(inp, c.root, "Fairness monitoring"))
    assert fair is not None
    groups: Mapping[str, Any] = fair["groups"]
    parts = []
    if isinstance(groups.get("department"), dict):
        rows = _fair_rows(groups["department"], c.w.min_cell)
        parts.append(fig(fairness_figure(rows, c.w.min_cell, title=FAIRNESS_TITLE), "fig-fairness"))
    tables = []
    for name in sorted(groups, key=lambda g: (g != "department", g)):
        block = groups[name]
        if not isinstance(block, dict):
            continue
        head = ("<tr><th>Group</th><th class='num'>Stays</th><th class='num'>Patients</th><th class='num'>Recall</th>"
                "<th class='num'>Precision</th><th class='num'>Selection rate</th>"
                "<th class='num'>False negative rate</th></tr>")
        body = ""
        for r in _fair_rows(block, c.w.min_cell):
            g = esc(r.get("group"))
            if r["suppressed"]:
                body += (f'<tr data-group="{g}"><td>{g}</td><td class="suppressed num" colspan="6" '
                         f'data-suppressed="true">{suppressed_text(c.w.min_cell)}</td></tr>')
                continue
            rates = "".join(_fair_rate(r, k) for k in ("recall", "precision", "selection_rate", "false_negative_rate"))
            body += (f'<tr data-group="{g}"><td>{g}</td><td class="num">{integer(r.get("n"))}</td>'
                     f'<td class="num">{integer(r.get("patients"))}</td>{rates}</tr>')
        parity = block.get("parity") or {}
        ratios = ", ".join(f"{esc(m.replace('_', ' '))} {number(_f((parity.get(m) or {}).get('ratio')), 2)}"
                           for m in sorted(parity))
        tables.append(f'<h3 style="font-size:14px;margin:14px 0 0">By {esc(name.replace("_", " "))}</h3>'
                      f'<table class="data" data-grouping="{esc(name)}">{head}{body}</table>'
                      f'<p class="note">Parity ratios (min/max over published groups): {ratios or "n/a"}.</p>')
    ff = fair.get("four_fifths") or {}
    below = ff.get("below_threshold") or []
    badge = ('<span class="badge bad">below threshold: ' + esc(", ".join(below)) + "</span>" if below
             else '<span class="badge good">all ratios at or above the threshold</span>')
    screen = (f'<p>Four-fifths screening (threshold {number(_f(ff.get("threshold")), 2)}): {badge}</p>'
              f'<p class="note">{esc(ff.get("note", ""))}</p>')
    window = fair.get("window") or {}
    lead = (f"Monitored window from {esc(window.get('start'))} ({integer(window.get('rows'))} index stays). Per-group "
            f"metrics of the champion's flags; groups with fewer than {c.w.min_cell} patients are suppressed and take "
            f"no part in the parity ratios; rates resting on fewer than {c.w.min_cell} cases are masked. "
            f"Patients counted from: {esc(fair.get('patients_counted_from', 'n/a'))}.")
    return _section("fairness", "Fairness by department", lead, "".join(parts) + screen + "".join(tables))


def drift_section(c: Context) -> str:
    inp = c.inputs.drift
    drift = inp.data
    if not inp.ok or not isinstance(((drift or {}).get("data_drift") or {}).get("dataset"), dict):
        return _section("drift", "Drift summary", "", _notice(inp, c.root, "Drift monitoring"))
    assert drift is not None
    dataset = drift["data_drift"]["dataset"]
    target = drift.get("target_drift") or {}
    pred = drift.get("prediction_drift") or {}
    quality = drift.get("model_quality") or {}
    qm = quality.get("metrics") or {}

    def verdict(flag: Any) -> str:
        if flag is None:
            return '<span class="badge neutral">n/a</span>'
        return '<span class="badge bad">drift</span>' if flag else '<span class="badge good">stable</span>'

    drifted = Metric("drift_n_drifted_columns", dataset.get("n_drifted_columns"),
                     integer(dataset.get("n_drifted_columns")))
    tiles = [
        _tile("Dataset drift", verdict(dataset.get("drifted")),
              f"{drifted.html()} of {integer(dataset.get('n_columns'))} features drifted"),
        _tile("Target drift", verdict(target.get("drifted")),
              f"readmission rate {pct(_f(target.get('reference_rate')))} → {pct(_f(target.get('current_rate')))}"),
        _tile("Prediction drift", verdict(pred.get("drifted")),
              f"mean score {number(_f(pred.get('reference_mean')))} → {number(_f(pred.get('current_mean')))}"),
        _tile("Current recall", pct(_f(qm.get("recall"))) if quality.get("available") else "n/a",
              f"precision {pct(_f(qm.get('precision')))}, ROC-AUC {number(_f(qm.get('roc_auc')))}"
              if quality.get("available") else esc(quality.get("reason", ""))),
    ]
    columns = (drift.get("data_drift") or {}).get("columns") or {}
    rows = ""
    for name in sorted(columns, key=lambda n: (not (columns[n] or {}).get("drifted"), n)):
        col = columns[name] or {}
        rows += (f'<tr data-column="{esc(name)}"><td>{esc(name)}</td><td>{esc(col.get("type", ""))}</td>'
                 f'<td>{esc(col.get("method", ""))}</td><td class="num">{number(_f(col.get("statistic")))}</td>'
                 f'<td class="num">{number(_f(col.get("threshold")))}</td><td>{esc(col.get("drift_rule", ""))}</td>'
                 f"<td>{verdict(col.get('drifted'))}</td></tr>")
    table = ("<details open><summary>Per-feature drift tests (Evidently)</summary><div class='scroll'>"
             "<table class='data' id='drift-table'><tr><th>Feature</th><th>Type</th><th>Test</th>"
             "<th class='num'>Statistic</th><th class='num'>Threshold</th><th>Rule</th><th>Verdict</th></tr>"
             f"{rows}</table></div></details>")
    windows = drift.get("windows") or {}
    ref, cur = windows.get("reference") or {}, windows.get("current") or {}
    lead = (f"Reference: training window ({esc(ref.get('start') or 'start')} to {esc(ref.get('end'))}, "
            f"{integer(ref.get('rows'))} index stays); current: monitored window ({esc(cur.get('start'))} to "
            f"{esc(cur.get('end') or 'end of data')}, {integer(cur.get('rows'))} index stays). Dataset drift when at "
            f"least {pct(_f(dataset.get('drift_share_threshold')), 0)} of the features drift.")
    return _section("drift", "Drift summary", lead, f'<div class="tiles">{"".join(tiles)}</div>{table}')


def _version(value: Any) -> str:
    return "none" if value is None else f"v{esc(value)}"


def promotion_section(c: Context) -> str:
    meta = c.inputs.model_meta.data or {}
    inp = c.inputs.promotion
    meta_html = ""
    if meta:
        meta_html = (f'<p class="note">Last trained model: {esc(meta.get("model_name"))} v{esc(meta.get("version"))}'
                     f", threshold {number(_f(meta.get('threshold')))} ({esc(meta.get('threshold_rule', ''))}), "
                     f"trained on discharges before {esc(meta.get('train_end'))}, validated until "
                     f"{esc(meta.get('valid_end'))}.</p>")
    if not inp.ok:
        return _section("promotion", "Champion model and last promotion decision", "",
                        _notice(inp, c.root, "Promotion decision") + meta_html)
    p = inp.data or {}
    decision = str(p.get("decision", "unknown"))
    css = "good" if decision == "promoted" else "bad" if decision == "refused" else "neutral"
    reasons = p.get("reasons") or []
    reasons_html = "".join(f"<li>{esc(r)}</li>" for r in reasons) if isinstance(reasons, list) else ""
    version = p.get("champion_version")
    champion = Metric("champion_version", None if version is None else str(version),
                      "none" if version is None else f"v{version}")
    body = (
        '<div class="decision">'
        f'<div><div class="label note">Champion (alias @champion)</div><div class="big">{champion.html("metric big")}'
        f"</div><div class='note'>{esc(p.get('model_name', ''))}</div></div>"
        f'<div><div class="label note">Last decision</div><div class="big"><span class="badge {css}" '
        f'data-metric="promotion_decision" data-value="{esc(decision)}">{esc(decision)}</span></div>'
        f"<div class='note'>challenger {_version(p.get('challenger_version'))}, previous champion "
        f"{_version(p.get('previous_version'))}</div></div>"
        f'<div style="flex:1;min-width:320px"><div class="label note">Reasons</div><ul>{reasons_html}</ul></div>'
        "</div>"
    )
    return _section("promotion", "Champion model and last promotion decision", "", body + meta_html)


# ---------------------------------------------------------------------------------------------
# The document


def topojson_standin() -> str:
    empty = '{"type":"Topology","objects":{},"arcs":[]}'
    entries = ",".join(f'"{name}":{empty}' for name in TOPOJSON_STANDINS)
    return ("<script>window.PlotlyGeoAssets=window.PlotlyGeoAssets||{};"
            f"window.PlotlyGeoAssets.topojson=Object.assign({{{entries}}},window.PlotlyGeoAssets.topojson||{{}});"
            "</script>")


def render(c: Context, plotly_js: str) -> tuple[str, list[str]]:
    """(the HTML document, the figure div ids)."""
    fig = FigureWriter()
    builders: list[Callable[[], str]] = [
        lambda: kpis_section(c),
        lambda: findings_section(c),
        lambda: departments_section(c, fig),
        lambda: map_section(c, fig),
        lambda: diagnoses_section(c, fig),
        lambda: trend_section(c, fig),
        lambda: model_section(c, fig),
        lambda: importance_section(c, fig),
        lambda: fairness_section(c, fig),
        lambda: drift_section(c),
        lambda: promotion_section(c),
    ]
    body = "\n".join(b() for b in builders)
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in SECTIONS)
    meta = c.inputs.model_meta.data or {}
    promo = c.inputs.promotion.data or {}
    chips = [f"{c.w.kpis.index_stays:,} index stays", f"{len(c.w.departments)} departments",
             f"small cells &lt; {c.w.min_cell} patients suppressed"]
    if promo.get("champion_version") is not None:
        chips.append(f"champion v{esc(promo['champion_version'])}")
    elif meta.get("version") is not None:
        chips.append(f"model v{esc(meta['version'])}")
    chips_html = "".join(f'<span class="chip">{ch}</span>' for ch in chips)
    footer = (
        "<footer>"
        "<p>Generated by the <code>report</code> stage of the pipeline (<code>dvc repro</code>) from "
        "<code>data/warehouse.duckdb</code> (marts) and the model, monitoring and promotion outputs. "
        "All data is synthetic (SNDS simulator): no real person is described.</p>"
        f"<p>Publication rule: every figure describing fewer than {c.w.min_cell} patients is suppressed.</p>"
        f"<p>{esc(geo.GEO_ATTRIBUTION)}. CIM-10 labels and department labels: SNDS nomenclatures (IR_CIM_V, "
        "IR_DPT_V), Health Data Hub / CNAM, Licence Ouverte / Etalab 2.0. Poverty rates: Insee, Filosofi 2020, "
        "Licence Ouverte / Etalab 2.0. Charts: plotly.js (MIT), embedded.</p>"
        "</footer>"
    )
    doc = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(c.title)}</title>\n<style>{CSS}</style>\n{topojson_standin()}\n"
        f"<script type=\"text/javascript\">{plotly_js}</script>\n</head>\n<body>\n"
        f'<header class="top"><h1>{esc(c.title)}</h1><div class="sub">{esc(c.subtitle)}</div>'
        f'<div class="chips">{chips_html}</div></header>\n'
        f'<nav class="toc">{nav}</nav>\n<main>\n{body}\n</main>\n{footer}\n</body>\n</html>\n'
    )
    return doc, fig.ids


def section_ids() -> Sequence[str]:
    return [sid for sid, _ in SECTIONS]
