"""Report stage: the "Regional Patient Flow Command Center", one self-contained HTML page.

Reads   data/warehouse.duckdb (read-only; schemas marts + ref): every data section is SQL on the marts
        pipelines/assets/idf-departements.geojson (IGN Admin Express, Licence Ouverte)
        optional: reports/metrics/evaluate.json + reports/plots/pr_curve.csv (evaluate),
        models/model_meta.json (train), reports/monitoring/{fairness,drift}.json (monitor),
        reports/promotion.json (promote). A missing one leaves its section saying the stage has not run.
Writes  reports/dashboard.html: plotly.js embedded once, no external URL, opens offline; the same
        inputs give the same bytes (no timestamps, fixed div ids, sorted rows).

Sections (stable ids): kpis, findings, departments, map, diagnoses, trend, model, importance,
fairness, drift, promotion. Insight numbers are <span data-metric=... data-value=...> so tests
can compare them with the marts. Cells under `min_cell_patients` patients are suppressed.
"""

from __future__ import annotations

import logging
from typing import Any

from pipelines import atomic
from pipelines.config import Params, Paths, ReportParams, WarehouseParams
from pipelines.dashboard import geo
from pipelines.dashboard.data import warehouse_numbers
from pipelines.dashboard.findings import findings, headline
from pipelines.dashboard.inputs import load_inputs
from pipelines.dashboard.page import Context, render
from pipelines.marts import connect

log = logging.getLogger(__name__)

DASHBOARD_FILE = "dashboard.html"


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    js: str = get_plotlyjs()
    return js


def build_dashboard(
    paths: Paths, rp: ReportParams, duckdb: WarehouseParams | None = None, seed: int = 0
) -> tuple[str, dict[str, Any]]:
    """(HTML document, headline numbers) from the warehouse (read under `duckdb`'s memory limit)
    and the optional inputs; `duckdb.bootstrap_replicates` and `seed`: the department intervals'
    patient bootstrap (the warehouse stage's, so the page and warehouse.json agree)."""
    wp = duckdb or WarehouseParams()
    geojson = geo.load_geojson()
    depts_geo = geo.departments(geojson)
    names = {code: d.name for code, d in depts_geo.items()}
    con = connect(paths.warehouse, wp, paths.root)
    try:
        w = warehouse_numbers(con, names, rp.min_cell_patients, rp.top_n_diagnoses, rp.cost_ntiles,
                              rp.trend_compare_months, wp.bootstrap_replicates, seed)
    finally:
        con.close()
    inputs = load_inputs(paths)
    points: dict[str, tuple[float, float]] = {}
    for code, dept in depts_geo.items():
        ids = [h.hospital_id for h in w.hospitals if h.department == code]
        points.update(geo.place(dept, ids))
    unplaced = sorted(h.hospital_id for h in w.hospitals if h.hospital_id not in points)
    if unplaced:
        log.warning("report: %d hospitals outside the mapped departments are not drawn: %s", len(unplaced),
                    ", ".join(unplaced[:10]))
    labels = {code: geo.label_point(d) for code, d in depts_geo.items()}
    notes = findings(w, inputs)
    ctx = Context(w=w, inputs=inputs, findings=notes, geojson=geojson, names=names, points=points, labels=labels,
                  title=rp.title, subtitle=rp.subtitle, top_features=rp.top_features, root=paths.root)
    doc, figure_ids = render(ctx, plotly_js())
    numbers = headline(w, inputs)
    numbers["figures"] = len(figure_ids)
    return doc, numbers


def run_report(paths: Paths, params: Params) -> dict[str, Any]:
    """The stage: write reports/dashboard.html; return the headline numbers."""
    rp = params.report
    doc, numbers = build_dashboard(paths, rp, params.warehouse, params.seed)
    out = paths.reports / DASHBOARD_FILE
    atomic.write_text(out, doc)
    log.info("report: %s (%.1f MB, %d figures)", out, len(doc.encode("utf-8")) / 1e6, numbers["figures"])
    return {"dashboard": str(out.relative_to(paths.root)) if out.is_relative_to(paths.root) else str(out),
            "bytes": len(doc.encode("utf-8")), **numbers}
