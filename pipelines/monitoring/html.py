"""The fairness page: Plotly bar charts and tables, one self-contained HTML file (plotly.js inlined)."""

from __future__ import annotations

import html
from typing import Any

from pipelines.figures.fairness import fairness_figure, reliability_figure

TABLE_COLUMNS = (
    ("group", "Group"), ("n", "Stays"), ("patients", "Patients"), ("positives", "Readmitted"),
    ("flagged", "Flagged"), ("recall", "Recall"), ("precision", "Precision"),
    ("false_negative_rate", "FNR"), ("selection_rate", "Selection rate"), ("brier", "Brier"),
    ("mean_predicted", "Mean predicted"), ("prevalence", "Observed rate"),
    ("observed_to_expected", "Observed / expected"),
)
TITLES = {"department": "By department of residence", "sex": "By sex", "age_band": "By age band"}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{label}</th>" for _, label in TABLE_COLUMNS)
    body = []
    for r in rows:
        cells = "".join(f"<td>{_fmt(r[key])}</td>" for key, _ in TABLE_COLUMNS)
        css = ' class="suppressed"' if r["suppressed"] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _parity_table(parity: dict[str, dict[str, Any]], screening: dict[str, Any]) -> str:
    rows = []
    for metric, entry in parity.items():
        passes = screening.get(metric, {}).get("passes")
        verdict = "–" if passes is None else ("≥ threshold" if passes else "below threshold: look closer")
        rows.append(
            f"<tr><td>{html.escape(metric)}</td><td>{_fmt(entry['ratio'])}</td>"
            f"<td>{_fmt(entry['min_group'])} ({_fmt(entry['min'])})</td>"
            f"<td>{_fmt(entry['max_group'])} ({_fmt(entry['max'])})</td><td>{entry['n_groups']}</td>"
            f"<td>{verdict}</td></tr>"
        )
    return ("<table><thead><tr><th>Metric</th><th>min/max ratio</th><th>Lowest group</th><th>Highest group</th>"
            "<th>Groups compared</th><th>Four-fifths screening</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f3f3f3; }
tr.suppressed td { color: #999; font-style: italic; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 12px; }
"""


def fairness_html(report: dict[str, Any], context: dict[str, Any]) -> str:
    """The whole page. `context` holds the window, model and row figures shown in the header."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Fairness of the readmission model on the monitored window</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Fairness of the 30-day readmission model</h1>",
        f"<p>Monitored window: discharges {html.escape(context['window'])}; model version "
        f"{html.escape(str(context['model_version']))}, threshold {_fmt(context['threshold'])}; "
        f"{report['rows']} labelled index stays. Patients counted from: {html.escape(report['patients_counted_from'])}."
        "</p>",
        f"<p>Groups with fewer than {report['min_cell_patients']} patients are suppressed (no figures) and left out "
        "of the ratios, as SNDS small-cell rules require.</p>",
        f"<p class='note'><b>Four-fifths screening.</b> {html.escape(report['four_fifths']['note'])} "
        f"Threshold: {_fmt(report['four_fifths']['threshold'])}.</p>",
    ]
    first = True
    for name, block in report["groups"].items():
        fig = fairness_figure(block["groups"], report["min_cell_patients"], group_label=name.replace("_", " "),
                              height=360)
        parts.append(f"<h2>{html.escape(TITLES.get(name, f'By {name}'))}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first, div_id=f"fairness-{name}",
                                 config={"displaylogo": False}))
        first = False
        parts.append(_table(block["groups"]))
        parts.append(_parity_table(block["parity"], report["four_fifths"]["checks"].get(name, {})))
        if "reliability" in block:
            parts.append(f"<h3>Calibration {html.escape(TITLES.get(name, f'by {name}').lower())}</h3>")
            parts.append("<p>Does the served probability mean the same in every group? Each line is one group's "
                         "stays in quantile bins of the probability; on the diagonal, predicted = observed.</p>")
            rel = reliability_figure(block["reliability"], report["min_cell_patients"],
                                     group_label=name.replace("_", " "))
            parts.append(rel.to_html(full_html=False, include_plotlyjs=False, div_id=f"reliability-{name}",
                                     config={"displaylogo": False}))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
