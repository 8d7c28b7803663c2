"""Plotly figures of the regional dashboard (the model's are in pipelines.figures.model).

Suppressed cells are never plotted (None, not a number); `min_cell` is the params' small-cell threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from pipelines.dashboard import geo
from pipelines.dashboard.data import DeptStat, Diagnoses, HospitalStat, Trend, group_label
from pipelines.figures.theme import ABOVE, CATEGORY_COLORS, GRID, NAVY, RATE_SCALE, SIMILAR, VERDICT_COLORS, layout


def _nan_to_none(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


def _wrap(name: str, width: int = 11) -> str:
    """'Seine-Saint-Denis' -> 'Seine-Saint-<br>Denis' (axis labels that fit under a bar)."""
    if len(name) <= width or "-" not in name:
        return name
    cuts = [i for i, ch in enumerate(name) if ch == "-"]
    cut = min(cuts, key=lambda i: abs(i - len(name) / 2))
    return name[: cut + 1] + "<br>" + name[cut + 1:]


def departments_figure(depts: Sequence[DeptStat], region_rate: float | None,
                       region_ci: tuple[float, float] | None) -> go.Figure:
    shown = [d for d in depts if not d.suppressed and d.rate is not None and d.ci is not None]
    x = [f"{d.code}<br>{_wrap(d.name)}" for d in shown]
    rates = [d.rate or 0.0 for d in shown]
    fig = go.Figure(go.Bar(
        x=x, y=rates,
        marker_color=[VERDICT_COLORS[d.verdict] for d in shown],
        error_y={"type": "data", "symmetric": False, "color": "#4a4e69", "thickness": 1.2, "width": 5,
                 "array": [d.ci[1] - (d.rate or 0) for d in shown if d.ci],
                 "arrayminus": [(d.rate or 0) - d.ci[0] for d in shown if d.ci]},
        customdata=[[d.index_stays, d.readmissions, d.ci[0] if d.ci else None, d.ci[1] if d.ci else None,
                     d.ratio, d.verdict, d.standardised_ratio,
                     d.standardised_ratio_ci[0] if d.standardised_ratio_ci else None,
                     d.standardised_ratio_ci[1] if d.standardised_ratio_ci else None] for d in shown],
        hovertemplate=("<b>%{x}</b><br>30-day readmission rate %{y:.1%}<br>95% CI %{customdata[2]:.1%} to "
                       "%{customdata[3]:.1%} (patient-clustered)<br>%{customdata[1]:,} readmissions / "
                       "%{customdata[0]:,} index stays<br>ratio to region %{customdata[4]:.3f} (%{customdata[5]})"
                       "<br>standardised ratio %{customdata[6]:.3f} (95% CI %{customdata[7]:.3f} to "
                       "%{customdata[8]:.3f})<extra></extra>"),
        name="department",
        showlegend=False,
    ))
    if region_rate is not None and region_ci is not None:
        fig.add_hrect(y0=region_ci[0], y1=region_ci[1], fillcolor=NAVY, opacity=0.10, line_width=0)
        fig.add_hline(y=region_rate, line={"color": NAVY, "dash": "dash", "width": 1.5})
    band = list(region_ci) if region_ci else []
    low = min([d.ci[0] for d in shown if d.ci] + band) if shown or band else 0.0
    high = max([d.ci[1] for d in shown if d.ci] + band) if shown or band else 1.0
    pad = (high - low) * 0.25 or 0.01
    fig.update_yaxes(tickformat=".0%", range=[max(0.0, low - pad), high + pad], title="30-day readmission rate")
    fig.update_xaxes(tickangle=0, tickfont={"size": 10.5})
    region = f"; dashed: Île-de-France {100 * region_rate:.1f}% with its CI" if region_rate is not None else ""
    return layout(fig, f"Rate by department (patient-clustered 95% CI){region}", 420, bargap=0.35)


def poverty_figure(depts: Sequence[DeptStat], region_rate: float | None) -> go.Figure:
    shown = [d for d in depts if not d.suppressed and d.rate is not None and d.poverty_rate is not None]
    fig = go.Figure(go.Scatter(
        x=[d.poverty_rate for d in shown], y=[d.rate for d in shown], mode="markers+text",
        text=[d.code for d in shown], textposition="top center",
        marker={"size": [8 + 14 * math.sqrt((d.index_stays or 0) / max(1, max(s.index_stays or 1 for s in shown)))
                         for d in shown],
                "color": [VERDICT_COLORS[d.verdict] for d in shown], "line": {"color": "white", "width": 1}},
        customdata=[[d.name] for d in shown],
        hovertemplate="<b>%{customdata[0]}</b><br>poverty rate %{x:.1f}%<br>readmission rate %{y:.1%}<extra></extra>",
        showlegend=False,
    ))
    if region_rate is not None:
        fig.add_hline(y=region_rate, line={"color": NAVY, "dash": "dot", "width": 1})
    fig.update_xaxes(title="Poverty rate, Insee Filosofi 2020 (%)")
    fig.update_yaxes(tickformat=".1%", title="30-day readmission rate")
    return layout(fig, "Readmission rate vs department poverty rate", 420)


INNER_RING = ("75", "92", "93", "94")  # Paris and the petite couronne: drawn again, zoomed, on the right


def _map_traces(geojson: Mapping[str, Any], depts: Sequence[DeptStat], hospitals: Sequence[HospitalStat],
                points: Mapping[str, tuple[float, float]], labels: Mapping[str, tuple[float, float]],
                geo_id: str, max_beds: int, legend: bool, min_cell: int) -> list[Any]:
    codes = [d.code for d in depts]
    traces: list[Any] = [go.Choropleth(
        geojson=dict(geojson), featureidkey=f"properties.{geo.CODE_PROPERTY}", locations=codes,
        z=_nan_to_none([d.rate for d in depts]), coloraxis="coloraxis", geo=geo_id,
        marker={"line": {"color": "white", "width": 1.2}},
        customdata=[[d.name, d.index_stays, d.ratio, d.poverty_rate, "suppressed" if d.suppressed else d.verdict]
                    for d in depts],
        hovertemplate=("<b>%{location} %{customdata[0]}</b><br>readmission rate %{z:.1%}<br>"
                       "ratio to region %{customdata[2]:.3f} (%{customdata[4]})<br>index stays %{customdata[1]:,}<br>"
                       "poverty rate %{customdata[3]:.1f}%<extra></extra>"),
        name="departments", showlegend=False,
    )]
    wanted = set(codes)
    by_category: dict[str, list[HospitalStat]] = {}
    for h in hospitals:
        if h.hospital_id in points and h.department in wanted:
            by_category.setdefault(h.category, []).append(h)
    for category in sorted(by_category):
        rows = by_category[category]
        traces.append(go.Scattergeo(
            lon=[points[h.hospital_id][0] for h in rows], lat=[points[h.hospital_id][1] for h in rows],
            mode="markers", name=category, geo=geo_id, legendgroup=category, showlegend=legend,
            marker={"size": [5 + 9 * math.sqrt((h.beds or 0) / max_beds) for h in rows],
                    "color": CATEGORY_COLORS.get(category, SIMILAR), "line": {"color": "white", "width": 0.8},
                    "opacity": 0.9},
            customdata=[[h.name, h.department, h.beds, f"suppressed (<{min_cell} patients)" if h.suppressed
                         else f"{h.stays:,} stays, {h.patients:,} patients"] for h in rows],
            hovertemplate="<b>%{customdata[0]}</b> (%{customdata[1]})<br>" + category
            + "<br>%{customdata[2]} beds<br>%{customdata[3]}<extra></extra>",
        ))
    traces.append(go.Scattergeo(
        lon=[labels[c][0] for c in codes if c in labels], lat=[labels[c][1] for c in codes if c in labels],
        text=[f"<b>{c}</b>" for c in codes if c in labels], mode="text", textfont={"size": 13, "color": NAVY},
        hoverinfo="skip", showlegend=False, name="codes", geo=geo_id,
    ))
    return traces


def map_figure(geojson: Mapping[str, Any], depts: Sequence[DeptStat], hospitals: Sequence[HospitalStat],
               points: Mapping[str, tuple[float, float]], labels: Mapping[str, tuple[float, float]],
               min_cell: int) -> go.Figure:
    """The region (left) and the inner ring zoomed (right); one shared colour scale."""
    from plotly.subplots import make_subplots

    inner = [d for d in depts if d.code in INNER_RING]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.56, 0.44], horizontal_spacing=0.02,
                        specs=[[{"type": "geo"}, {"type": "geo"}]],
                        subplot_titles=("Île-de-France", "Paris and the inner ring (75, 92, 93, 94)"))
    max_beds = max([h.beds or 0 for h in hospitals] + [1])
    for trace in _map_traces(geojson, depts, hospitals, points, labels, "geo", max_beds, True, min_cell):
        fig.add_trace(trace)
    if inner:
        for trace in _map_traces(geojson, inner, hospitals, points, labels, "geo2", max_beds, False, min_cell):
            fig.add_trace(trace)
    rates = [d.rate for d in depts if d.rate is not None]
    fig.update_layout(coloraxis={
        "colorscale": RATE_SCALE, "cmin": min(rates) if rates else None, "cmax": max(rates) if rates else None,
        "colorbar": {"title": {"text": "30-day<br>readmission", "side": "top"}, "tickformat": ".1%",
                     "thickness": 12, "len": 0.7, "x": 1.0},
    })
    fig.update_geos(fitbounds="locations", visible=False, projection_type="mercator", bgcolor="white")
    for annotation in fig.layout.annotations:
        annotation.font = {"size": 12, "color": "#6c757d"}
    return layout(fig, "30-day readmission rate by department of residence; hospitals by category (size: beds)",
                   600, margin={"l": 0, "r": 0, "t": 56, "b": 0},
                   legend={"orientation": "h", "y": 0.0, "yanchor": "bottom", "x": 0.0, "title": {"text": ""}})


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def diagnoses_cost_figure(diag: Diagnoses) -> go.Figure:
    rows = list(reversed(diag.by_cost))
    fig = go.Figure(go.Bar(
        y=[f"{d.category} · {_short(d.label)}" for d in rows], x=[d.cost for d in rows], orientation="h",
        marker_color=NAVY, text=[f"€{d.cost / 1e6:.1f}M" if d.cost >= 1e6 else f"€{d.cost / 1e3:.0f}k" for d in rows],
        textposition="outside", cliponaxis=False,
        customdata=[[d.label, group_label(d.group), d.index_stays, d.patients, d.cost_share] for d in rows],
        hovertemplate=("<b>%{customdata[0]}</b><br>%{customdata[1]}<br>cost €%{x:,.0f} "
                       "(%{customdata[4]:.1%} of index-stay cost)<br>%{customdata[2]:,} index stays, "
                       "%{customdata[3]:,} patients<extra></extra>"),
    ))
    fig.update_xaxes(title="Cost of index episodes (€)", tickformat="~s")
    return layout(fig, f"Top {len(rows)} diagnoses by cost of index episodes", 60 + 34 * max(4, len(rows)),
                   margin={"l": 10, "r": 60, "t": 48, "b": 10})


def diagnoses_readmissions_figure(diag: Diagnoses) -> go.Figure:
    rows = list(reversed(diag.by_readmissions))
    fig = go.Figure(go.Bar(
        y=[f"{d.category} · {_short(d.label)}" for d in rows], x=[d.readmissions for d in rows], orientation="h",
        marker_color=ABOVE, text=[f"{d.readmissions or 0:,} ({100 * (d.rate or 0.0):.0f}%)" for d in rows],
        textposition="outside", cliponaxis=False,
        customdata=[[d.label, group_label(d.group), d.index_stays, d.rate] for d in rows],
        hovertemplate=("<b>%{customdata[0]}</b><br>%{customdata[1]}<br>%{x:,} readmissions of "
                       "%{customdata[2]:,} index stays (%{customdata[3]:.1%})<extra></extra>"),
    ))
    fig.update_xaxes(title="30-day readmissions")
    return layout(fig, f"Top {len(rows)} diagnoses by 30-day readmissions", 60 + 34 * max(4, len(rows)),
                   margin={"l": 10, "r": 70, "t": 48, "b": 10})


def cost_tile_figure(diag: Diagnoses) -> go.Figure:
    rows = [g for g in diag.cost_groups if not g.suppressed and g.share is not None]
    rows = sorted(rows, key=lambda g: (g.share or 0.0, g.group))
    fig = go.Figure(go.Bar(
        y=[group_label(g.group) for g in rows], x=[g.share for g in rows], orientation="h",
        marker_color=[ABOVE if g is rows[-1] else SIMILAR for g in rows],
        text=[f"{100 * (g.share or 0):.0f}%" for g in rows], textposition="outside", cliponaxis=False,
        customdata=[[g.index_stays, g.cost] for g in rows],
        hovertemplate="<b>%{y}</b><br>%{x:.1%} of the cost<br>%{customdata[0]:,} stays, €%{customdata[1]:,.0f}"
                      "<extra></extra>",
    ))
    fig.update_xaxes(tickformat=".0%", title="Share of the cost of the costliest stays")
    tile = diag.cost_tile
    return layout(fig, f"Costliest {100 // tile.ntiles}% of index stays (≥ €{tile.threshold_euros or 0:,.0f}): "
                        "cost by diagnosis group", 60 + 34 * max(4, len(rows)),
                   margin={"l": 10, "r": 50, "t": 48, "b": 10})


def trend_figure(trend: Trend) -> go.Figure:
    """Rate (left axis, drawn on top) and index stays (bars, right axis) per month of discharge.

    Months only partly inside the span of measurable discharges are drawn apart (open markers)."""
    months = [m.month.isoformat() for m in trend.region]
    full = [m if m.complete else None for m in trend.region]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=months, y=[m.index_stays for m in trend.region], name="index stays",
                         marker_color="#e3e8f0", hovertemplate="%{x|%b %Y}: %{y:,} index stays<extra></extra>"))
    upper = [m.ci[1] if m and m.ci else None for m in full]
    lower = [m.ci[0] if m and m.ci else None for m in full]
    fig.add_trace(go.Scatter(x=months, y=upper, mode="lines", line={"width": 0}, showlegend=False, yaxis="y2",
                             hoverinfo="skip", name="CI high"))
    fig.add_trace(go.Scatter(x=months, y=lower, mode="lines", line={"width": 0}, fill="tonexty", yaxis="y2",
                             fillcolor="rgba(31,58,95,0.15)", name="95% CI", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=months, y=[m.rate if m else None for m in full], mode="lines+markers",
                             name="regional rate", line={"color": NAVY, "width": 2}, marker={"size": 4}, yaxis="y2",
                             hovertemplate="%{x|%b %Y}: %{y:.1%}<extra></extra>"))
    partial = [m for m in trend.region if not m.complete and m.rate is not None]
    if partial:
        fig.add_trace(go.Scatter(
            x=[m.month.isoformat() for m in partial], y=[m.rate for m in partial], mode="markers", yaxis="y2",
            name="partial month", marker={"size": 8, "symbol": "circle-open", "color": NAVY},
            hovertemplate="%{x|%b %Y} (partial month): %{y:.1%}<extra></extra>",
        ))
    fig.update_layout(
        yaxis={"side": "right", "showgrid": False, "title": "index stays", "rangemode": "tozero"},
        yaxis2={"overlaying": "y", "side": "left", "tickformat": ".0%", "title": "30-day readmission rate",
                "rangemode": "tozero", "gridcolor": GRID},
        xaxis={"title": "month of discharge"},
    )
    return layout(fig, "Monthly regional readmission rate (index stays discharged that month)", 400)


def trend_heatmap(trend: Trend, names: Mapping[str, str], min_cell: int) -> go.Figure:
    months = trend.months
    depts = sorted({c.department for c in trend.cells if c.department is not None})
    cell = {(c.department, c.month): c for c in trend.cells}
    z = [[(cell[(d, m)].rate if (d, m) in cell and not cell[(d, m)].suppressed else None) for m in months]
         for d in depts]
    def note(d: str, m: Any) -> str:
        x = cell.get((d, m))
        if x is None:
            return ""
        if x.suppressed:
            return f" suppressed (<{min_cell} patients)"
        return f" masked (<{min_cell} readmitted patients)" if x.masked else ""

    text = [[note(d, m) for m in months] for d in depts]
    fig = go.Figure(go.Heatmap(
        z=z, x=[m.isoformat() for m in months], y=[f"{d} {names.get(d, '')}" for d in depts], colorscale=RATE_SCALE,
        customdata=text, hoverongaps=False, xgap=1, ygap=1,
        colorbar={"tickformat": ".0%", "thickness": 12, "title": {"text": "rate"}},
        hovertemplate="%{y}, %{x|%b %Y}: %{z:.1%}%{customdata}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, "Readmission rate by department and month (blank: suppressed cell)", 360)
