"""Figures of the model's evaluation, drawn by the evaluate stage (files) and the dashboard.

Cells under the small-cell threshold (`min_cell`, from params) are never plotted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from sklearn.metrics import classification_report as sk_classification_report

from pipelines.figures.theme import MODEL_COLORS, NAVY, SIMILAR, layout, model_label, model_order

CLASS_NAMES = ["not readmitted", "readmitted"]

Curve = tuple[Iterable[float], Iterable[float]]  # (x values, y values), lists or arrays


def classification_report(tn: int, fp: int, fn: int, tp: int) -> dict[str, dict[str, float]]:
    """scikit-learn's classification report (no accuracy row) from the confusion counts.

    The four cells weighted by their counts give exactly the report of the full label arrays."""
    report: dict[str, Any] = sk_classification_report(
        [0, 0, 1, 1], [0, 1, 0, 1], labels=[0, 1], target_names=CLASS_NAMES, sample_weight=[tn, fp, fn, tp],
        output_dict=True, zero_division=0)
    report.pop("accuracy", None)
    return report


def _number(value: Any) -> float | None:
    """A JSON number as float (None for missing, booleans, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def operating_points(rf: Mapping[str, Any], lace: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(label, recall, precision) of the forest at its threshold and of LACE at its cutoff (evaluate.json)."""
    points: list[tuple[str, float, float]] = []
    recall, precision = _number(rf.get("recall")), _number(rf.get("precision"))
    if recall is not None and precision is not None:
        threshold = _number(rf.get("threshold"))
        shown = "n/a" if threshold is None else f"{threshold:.3f}"
        points.append((f"RF operating point (threshold {shown})", recall, precision))
    recall, precision = _number(lace.get("recall")), _number(lace.get("precision"))
    if recall is not None and precision is not None:
        points.append((f"LACE ≥ {lace.get('cutoff')}", recall, precision))
    return points


def confusion_figure(tn: int, fp: int, fn: int, tp: int, min_cell: int, threshold: float | None) -> go.Figure:
    counts = [[tn, fp], [fn, tp]]
    shown = [[v if v >= min_cell else None for v in row] for row in counts]
    text = [[f"{v:,}" if v >= min_cell else f"<{min_cell}" for v in row] for row in counts]
    fig = go.Figure(go.Heatmap(
        z=shown, x=["predicted:<br>no readmission", "predicted:<br>readmission"],
        y=["actual:<br>no readmission", "actual:<br>readmission"], text=text, texttemplate="%{text}",
        textfont={"size": 16}, colorscale=[[0, "#eef2f7"], [1, NAVY]], showscale=False, hoverinfo="skip",
        xgap=2, ygap=2,
    ))
    fig.update_yaxes(autorange="reversed")
    at = f", threshold {threshold:.3f}" if threshold is not None else ""
    return layout(fig, f"Confusion matrix{at}", 360)


def classification_report_figure(tn: int, fp: int, fn: int, tp: int) -> go.Figure:
    report = classification_report(tn, fp, fn, tp)
    rows = list(report)
    cols = ["precision", "recall", "f1-score"]
    z = [[report[r][c] for c in cols] for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=[f"{r} (n={int(report[r]['support']):,})" if report[r].get("support") is not None else r
                        for r in rows],
        text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}", textfont={"size": 14},
        zmin=0, zmax=1, colorscale=[[0, "#fbeee6"], [1, "#5b8e7d"]], showscale=False, hoverinfo="skip",
        xgap=2, ygap=2,
    ))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, "Classification report, test window", 360)


def _line(model: str) -> dict[str, Any]:
    return {"color": MODEL_COLORS.get(model, SIMILAR), "width": 2.5 if model == "rf" else 1.6,
            "dash": {"oracle": "dot", "rf_uncalibrated": "dash"}.get(model, "solid")}


def pr_figure(curves: Mapping[str, Sequence[tuple[float, float]]], pr_aucs: Mapping[str, float | None],
              prevalence: float | None, points: Sequence[tuple[str, float, float]]) -> go.Figure:
    """curves: model -> (recall, precision) points; points: (label, recall, precision) operating points."""
    fig = go.Figure()
    for model in model_order(curves):
        pts = curves[model]
        ap = pr_aucs.get(model)
        name = model_label(model) + (f" (AP {ap:.3f})" if ap is not None else "")
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=name, line=_line(model),
            hovertemplate=f"{model_label(model)}<br>recall %{{x:.2f}}, precision %{{y:.2f}}<extra></extra>",
        ))
    if prevalence is not None:
        fig.add_hline(y=prevalence, line={"color": "#adb5bd", "dash": "dash", "width": 1},
                      annotation_text=f"no-skill baseline (prevalence {100 * prevalence:.1f}%)",
                      annotation_position="top right", annotation_font_size=10)
    for label, recall, precision in points:
        fig.add_trace(go.Scatter(x=[recall], y=[precision], mode="markers", name=label,
                                 marker={"size": 11, "symbol": "diamond", "line": {"color": "white", "width": 1}},
                                 hovertemplate=f"{label}<br>recall %{{x:.3f}}, precision %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title="recall", range=[0, 1.02])
    fig.update_yaxes(title="precision", range=[0, 1.02])
    return layout(fig, "Precision-recall, test window, with baselines", 360,
                  legend={"orientation": "v", "x": 0.99, "xanchor": "right", "y": 0.99, "yanchor": "top",
                          "bgcolor": "rgba(255,255,255,0.85)", "font": {"size": 10}})


def roc_figure(curves: Mapping[str, Curve], aucs: Mapping[str, float]) -> go.Figure:
    """curves: model -> (false positive rates, true positive rates)."""
    fig = go.Figure()
    for model in model_order(curves):
        fpr, tpr = curves[model]
        fig.add_trace(go.Scatter(
            x=list(fpr), y=list(tpr), mode="lines", name=f"{model_label(model)} (AUC {aucs[model]:.3f})",
            line=_line(model), hovertemplate=f"{model_label(model)}<br>FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                             line={"color": "#adb5bd", "dash": "dash", "width": 1}, hoverinfo="skip"))
    fig.update_xaxes(title="false positive rate", range=[0, 1.02])
    fig.update_yaxes(title="true positive rate", range=[0, 1.02])
    return layout(fig, "ROC, test window", 360)


def calibration_figure(curves: Mapping[str, Curve]) -> go.Figure:
    """curves: model -> (mean predicted probability, observed readmission rate) per bin."""
    fig = go.Figure()
    for model in model_order(curves):
        predicted, observed = curves[model]
        fig.add_trace(go.Scatter(
            x=list(predicted), y=list(observed), mode="lines+markers", name=model_label(model), line=_line(model),
            hovertemplate=f"{model_label(model)}<br>predicted %{{x:.3f}}, observed %{{y:.3f}}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line={"color": "#adb5bd", "dash": "dash", "width": 1}, hoverinfo="skip"))
    fig.update_xaxes(title="mean predicted probability")
    fig.update_yaxes(title="observed readmission rate")
    return layout(fig, "Calibration (reliability), test window: the served probability against the observed rate",
                  360)


def importance_figure(importance: Mapping[str, float], top: int,
                      errors: Mapping[str, float] | None = None) -> go.Figure:
    """The `top` features by importance; `errors` (e.g. the standard deviation over repeats) as error bars."""
    rows = sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    rows.reverse()
    bar: dict[str, Any] = {}
    if errors is not None:
        bar["error_x"] = {"type": "data", "array": [errors[k] for k, _ in rows], "color": "#4a4e69"}
    fig = go.Figure(go.Bar(
        y=[k for k, _ in rows], x=[v for _, v in rows], orientation="h",
        marker_color=[NAVY if v > 0 else SIMILAR for _, v in rows],
        hovertemplate="%{y}: %{x:.4f}<extra></extra>", **bar,
    ))
    fig.update_xaxes(title="Drop in score when the feature is shuffled (permutation importance)")
    return layout(fig, f"Feature importance (top {len(rows)}), test window", 60 + 28 * max(5, len(rows)))
