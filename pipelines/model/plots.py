"""Plotly figures of the evaluation, and the HTML/PNG writers.

HTML that works offline: plotly.js (~4.5 MB) is embedded, never fetched from a CDN. To keep the
size down, figures saved one per file use include_plotlyjs="directory" (one plotly.min.js next
to them, shared), and the single self-contained page logged to MLflow embeds plotly.js once for
all its figures.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

log = logging.getLogger(__name__)

SMALL_CELL = 10  # SNDS publication rule: counts below this are not shown
COLORS = {"rf": "#1f77b4", "logreg": "#ff7f0e", "lace": "#2ca02c", "oracle": "#7f7f7f"}
LABELS = {"rf": "Random Forest", "logreg": "Logistic regression", "lace": "LACE index", "oracle": "Bayes oracle"}


def _name(model: str) -> str:
    return LABELS.get(model, model)


def confusion_matrix_figure(matrix: np.ndarray, threshold: float) -> go.Figure:
    """2x2 counts (rows: actual 0/1, columns: predicted 0/1); cells under 10 shown as '<10'."""
    text = [[f"{v:,}" if v >= SMALL_CELL else f"<{SMALL_CELL}" for v in row] for row in matrix.tolist()]
    shown = np.where(matrix >= SMALL_CELL, matrix, 0)
    fig = go.Figure(go.Heatmap(
        z=shown, x=["predicted: not readmitted", "predicted: readmitted"],
        y=["actual: not readmitted", "actual: readmitted"], text=text, texttemplate="%{text}",
        colorscale="Blues", showscale=False, hoverinfo="skip",
    ))
    fig.update_layout(title=f"Confusion matrix, test window (threshold {threshold:.3f})",
                      yaxis={"autorange": "reversed"}, width=620, height=460)
    return fig


def classification_report_figure(report: Mapping[str, Mapping[str, float]]) -> go.Figure:
    rows = [k for k in report if isinstance(report[k], Mapping)]
    cols = ["precision", "recall", "f1-score"]
    z = [[float(report[r][c]) for c in cols] for r in rows]
    support = [int(report[r]["support"]) for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=[f"{r} (n={s:,})" for r, s in zip(rows, support, strict=True)], zmin=0, zmax=1,
        text=[[f"{v:.3f}" for v in row] for row in z], texttemplate="%{text}", colorscale="Viridis",
    ))
    fig.update_layout(title="Classification report, test window", yaxis={"autorange": "reversed"},
                      width=680, height=420)
    return fig


def pr_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], aps: Mapping[str, float],
              points: Mapping[str, tuple[float, float]], prevalence: float) -> go.Figure:
    """curves: model -> (recall, precision); points: label -> (recall, precision) operating points."""
    fig = go.Figure()
    for model, (recall, precision) in curves.items():
        fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name=f"{_name(model)} (AP {aps[model]:.3f})",
                                 line={"color": COLORS.get(model)}))
    for label, (point_recall, point_precision) in points.items():
        fig.add_trace(go.Scatter(x=[point_recall], y=[point_precision], mode="markers", name=label,
                                 marker={"size": 11, "symbol": "diamond"}))
    fig.add_hline(y=prevalence, line_dash="dot", annotation_text=f"prevalence {prevalence:.3f}")
    fig.update_layout(title="Precision-recall, test window", xaxis_title="recall", yaxis_title="precision",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], width=760, height=560)
    return fig


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], aucs: Mapping[str, float]) -> go.Figure:
    """curves: model -> (fpr, tpr)."""
    fig = go.Figure()
    for model, (fpr, tpr) in curves.items():
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{_name(model)} (AUC {aucs[model]:.3f})",
                                 line={"color": COLORS.get(model)}))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#bbb"}))
    fig.update_layout(title="ROC, test window", xaxis_title="false positive rate", yaxis_title="true positive rate",
                      width=760, height=560)
    return fig


def calibration_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> go.Figure:
    """curves: model -> (mean predicted probability, observed readmission rate) per bin."""
    fig = go.Figure()
    for model, (predicted, observed) in curves.items():
        fig.add_trace(go.Scatter(x=predicted, y=observed, mode="lines+markers", name=_name(model),
                                 line={"color": COLORS.get(model)}))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "#bbb"}))
    fig.update_layout(title="Calibration, test window (the forest is class-weighted: scores above rates)",
                      xaxis_title="mean predicted probability", yaxis_title="observed readmission rate",
                      width=760, height=560)
    return fig


def importance_figure(names: Sequence[str], means: np.ndarray, stds: np.ndarray, scoring: str) -> go.Figure:
    order = np.argsort(means)
    fig = go.Figure(go.Bar(
        x=np.asarray(means)[order], y=[names[i] for i in order], orientation="h",
        error_x={"type": "data", "array": np.asarray(stds)[order]}, marker_color=COLORS["rf"],
    ))
    fig.update_layout(title=f"Permutation importance on the test window (drop in {scoring})",
                      xaxis_title=f"mean decrease in {scoring}", width=760, height=40 + 28 * len(names) + 120)
    return fig


def write_figures(figures: Mapping[str, go.Figure], folder: Path, png: Sequence[str] = ()) -> list[Path]:
    """<name>.html per figure (sharing one plotly.min.js in `folder`), PNGs for the names in `png`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        path = folder / f"{name}.html"
        fig.write_html(path, include_plotlyjs="directory", full_html=True)
        written.append(path)
    for name in png:
        path = folder / f"{name}.png"
        try:
            figures[name].write_image(path, scale=1)
        except Exception as exc:  # kaleido missing or broken: the HTML is the deliverable
            log.warning("PNG export of %s failed: %s", name, exc)
            continue
        written.append(path)
    return written


def combined_html(figures: Mapping[str, go.Figure], title: str) -> str:
    """One self-contained page with every figure; plotly.js embedded once."""
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures.values())]
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title>"
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(parts)}</body></html>\n"
