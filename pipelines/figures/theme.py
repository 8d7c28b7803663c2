"""The one look of every Plotly figure: palette, model names and the layout template."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
NAVY = "#1f3a5f"
ABOVE = "#c8553d"
BELOW = "#2e86ab"
SIMILAR = "#8d99ae"
GRID = "#e6e9ef"
VERDICT_COLORS = {"above": ABOVE, "below": BELOW, "similar": SIMILAR, "suppressed": "#d9d9d9", "masked": "#d9d9d9"}
MODEL_COLORS = {"rf": "#1f3a5f", "rf_uncalibrated": "#9fb3c8", "logreg": "#f4a259", "lace": "#5b8e7d",
                "oracle": "#8d99ae"}
MODEL_LABELS = {"rf": "Random Forest", "rf_uncalibrated": "Random Forest, raw score (before calibration)",
                "logreg": "Logistic regression", "lace": "LACE index", "oracle": "Bayes oracle (simulator truth)"}
MODEL_ORDER = ("oracle", "rf", "rf_uncalibrated", "logreg", "lace")  # legend order; other names follow, sorted
CATEGORY_COLORS = {"AP-HP/CHU": "#1f3a5f", "CH": "#2e86ab", "ESPIC": "#5b8e7d", "Private clinic": "#f4a259"}
RATE_SCALE = [[0.0, "#f1f5f9"], [0.5, "#f4a259"], [1.0, "#9c2a1b"]]

TEMPLATE = go.layout.Template(layout=go.Layout(
    font={"family": FONT, "size": 12, "color": "#2b2d42"},
    paper_bgcolor="white",
    plot_bgcolor="white",
    colorway=[NAVY, "#f4a259", "#5b8e7d", ABOVE, BELOW, "#8d99ae", "#bc4b51", "#6d597a"],
    xaxis={"gridcolor": GRID, "zerolinecolor": GRID, "linecolor": "#c5cad3", "automargin": True},
    yaxis={"gridcolor": GRID, "zerolinecolor": GRID, "linecolor": "#c5cad3", "automargin": True},
    hoverlabel={"font": {"family": FONT}},
    legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "font": {"size": 11}},
    margin={"l": 10, "r": 10, "t": 56, "b": 10},
    title={"font": {"size": 14, "color": NAVY}, "x": 0.01, "xanchor": "left", "xref": "container",
           "y": 0.985, "yanchor": "top", "yref": "container"},
))


def layout(fig: go.Figure, title: str, height: int = 400, **kwargs: Any) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title={"text": title}, height=height, **kwargs)
    return fig


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def model_order(models: Any) -> list[str]:
    """The known models in MODEL_ORDER, then any other name, sorted."""
    names = set(models)
    return [m for m in MODEL_ORDER if m in names] + sorted(names - set(MODEL_ORDER))
