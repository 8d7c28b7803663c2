"""The fairness bar chart (recall, precision, selection rate per group), for the monitoring page and the dashboard."""

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
