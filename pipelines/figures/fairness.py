"""The fairness bar chart (recall, precision, selection rate per group), for the monitoring page and the
dashboard, and the per-group reliability (calibration) curves of the monitoring page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from pipelines.figures.theme import NAVY, layout

BARS = (("recall", "recall", NAVY), ("precision", "precision", "#f4a259"),
        ("selection_rate", "selection rate", "#5b8e7d"))


def fairness_figure(rows: Sequence[Mapping[str, Any]], min_cell: int, *, group_label: str = "department",
                    title: str = "", height: int = 400) -> go.Figure:
    """One group of bars per row (`group`); a row with `suppressed` true gets no bar, only a note."""
    groups = [str(r["group"]) for r in rows]
    fig = go.Figure()
    for key, label, color in BARS:
        fig.add_trace(go.Bar(
            x=groups, y=[None if r["suppressed"] else r.get(key) for r in rows], name=label,
            marker_color=color, hovertemplate=f"%{{x}}: {label} %{{y:.1%}}<extra></extra>",
        ))
    for i, r in enumerate(rows):
        if r["suppressed"]:
            fig.add_annotation(x=i, y=0, text=f"suppressed<br>(<{min_cell} patients)", showarrow=False,
                               yanchor="bottom", font={"size": 10, "color": "#6c757d"})
    fig.update_yaxes(tickformat=".0%", range=[0, 1])
    fig.update_xaxes(title=group_label, type="category")
    return layout(fig, title, height, barmode="group")


def reliability_figure(rows: Sequence[Mapping[str, Any]], min_cell: int, *, group_label: str = "department",
                       height: int = 420) -> go.Figure:
    """One line per published group: mean predicted probability vs observed rate in its quantile bins.
    Hidden bins (under `min_cell` patients, or 1 to min_cell-1 readmitted) leave a gap."""
    fig = go.Figure()
    top = 0.05
    for r in rows:
        if r["suppressed"]:
            continue
        x = [b["mean_predicted"] if not b["suppressed"] else None for b in r["bins"]]
        y = [b["observed_rate"] for b in r["bins"]]
        top = max([top, *(v for v in x + y if v is not None)])
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=f"{group_label} {r['group']}", connectgaps=False,
            hovertemplate=f"{r['group']}<br>predicted %{{x:.3f}}, observed %{{y:.3f}}<extra></extra>",
        ))
    edge = min(1.0, top * 1.1)
    fig.add_trace(go.Scatter(x=[0, edge], y=[0, edge], mode="lines", name="perfect",
                             line={"color": "#adb5bd", "dash": "dash", "width": 1}, hoverinfo="skip"))
    fig.update_xaxes(title="mean predicted probability (bin)", range=[0, edge])
    fig.update_yaxes(title="observed readmission rate", range=[0, edge])
    suppressed = [str(r["group"]) for r in rows if r["suppressed"]]
    note = f"; not shown (<{min_cell} patients): {', '.join(suppressed)}" if suppressed else ""
    return layout(fig, f"Reliability by {group_label}, monitored window{note}", height)
