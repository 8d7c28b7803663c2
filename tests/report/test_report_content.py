"""The dashboard's content, without a browser: numbers equal the marts, suppression, offline HTML.

The main fixture is a real small warehouse (generate -> clean -> warehouse at 3,000 patients,
built once per run: the `small_project` of tests/conftest.py) plus model/monitoring/promotion
inputs in the shapes those stages write. A hand-made tiny warehouse checks what the real one
cannot pin down: a department that stands out, small cells, a missing input.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.config import Params, Paths
from pipelines.dashboard import geo
from pipelines.dashboard.page import section_ids
from pipelines.report import DASHBOARD_FILE, run_report
from tests.report import report_page as rp
from tests.support import report_fixtures as rfx

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(report_project: Paths) -> Paths:
    return report_project


@pytest.fixture(scope="module")
def report(project: Paths) -> dict[str, Any]:
    numbers = run_report(project, Params())
    page = (project.reports / DASHBOARD_FILE).read_text(encoding="utf-8")
    return {"numbers": numbers, "page": page}


def _close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ---- structure ------------------------------------------------------------------------------

def test_every_section_is_present_once(report: dict[str, Any]) -> None:
    sections = rp.resources(report["page"]).sections
    assert sections == list(section_ids())
    assert not re.search(r'class="notice stage-missing"', report["page"]), "every optional input exists here"


def test_the_page_is_self_contained(report: dict[str, Any]) -> None:
    page: str = report["page"]
    assert rp.external_loads(page) == []
    assert page.count("plotly.js v2") == 1, "plotly.js embedded exactly once"
    assert len(re.findall(r'Plotly\.newPlot\(\s*"fig-', page)) == report["numbers"]["figures"] >= 12
    # Attribution of the boundaries in the page (the asset ships in the package).
    assert "IGN" in page
    assert "Licence Ouverte" in page
    assert geo.GEOJSON_FILE.is_file()
    assert geo.GEOJSON_FILE.parent.name == "assets"


def test_same_inputs_same_bytes(project: Paths, report: dict[str, Any]) -> None:
    first = hashlib.sha256(report["page"].encode()).hexdigest()
    run_report(project, Params())
    again = hashlib.sha256((project.reports / DASHBOARD_FILE).read_bytes()).hexdigest()
    assert first == again
    assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", report["page"]), "no timestamp"


# ---- numbers equal the marts ---------------------------------------------------------------

def test_tagged_numbers_equal_the_marts(project: Paths, report: dict[str, Any]) -> None:
    page_metrics = rp.metrics(report["page"])
    expected = rp.expected_from_marts(project.warehouse)
    compared = 0
    for key, shown in page_metrics.items():
        if key not in expected:
            continue
        for value, text in shown:
            assert value, f"{key}: tagged without a value ({text})"
            assert _close(float(value), expected[key]), f"{key}: page {value} vs marts {expected[key]}"
            compared += 1
    # The headline numbers are all on the page and compared.
    for key in ("stays", "patients", "index_stays", "readmissions", "readmission_rate", "total_cost"):
        assert key in page_metrics, key
    published = [k for k in expected if k.startswith("department_rate_")]
    assert len(published) == 8
    assert all(k in page_metrics for k in published)
    # Every published department x month rate and cost share of the marts is on the page.
    complete = ("month_rate_", "department_rate_", "department_index_stays_", "cost_share_top_")
    assert [k for k in expected if k.startswith(complete) and k not in page_metrics] == []
    assert any(k.startswith("month_rate_") for k in page_metrics)
    assert compared > 150


def test_numbers_equal_warehouse_json(project: Paths, report: dict[str, Any]) -> None:
    """The warehouse stage's metric file and the page agree (its rounding: 4 digits, ratios 3)."""
    wj = json.loads((project.metrics / "warehouse.json").read_text())
    page = report["page"]
    assert metric_close(page, "readmission_rate", wj["readmission_rate"], 5e-5)
    assert metric_close(page, "readmission_rate_ci_low", wj["readmission_rate_ci95"][0], 5e-5)
    assert metric_close(page, "readmission_rate_ci_high", wj["readmission_rate_ci95"][1], 5e-5)
    assert rp.metric_value(page, "index_stays") == wj["index_stays"]
    assert rp.metric_value(page, "stays") == wj["stays"]
    for dept, fig in wj["departments"].items():
        if "rate" not in fig:  # suppressed or masked in both
            assert f"department_rate_{dept}" not in rp.metrics(page)
            continue
        assert metric_close(page, f"department_rate_{dept}", fig["rate"], 5e-5)
        # the patient-clustered intervals (same bootstrap, same seed) are the headline ones
        assert metric_close(page, f"department_rate_{dept}_ci_low", fig["ci95"][0], 5e-5)
        assert metric_close(page, f"department_rate_{dept}_ci_high", fig["ci95"][1], 5e-5)
        assert metric_close(page, f"department_standardised_ratio_{dept}", fig["standardised_ratio"], 5e-4)
        assert metric_close(page, f"department_standardised_ratio_{dept}_ci_low",
                            fig["standardised_ratio_ci95"][0], 5e-4)
        assert metric_close(page, f"department_standardised_ratio_{dept}_ci_high",
                            fig["standardised_ratio_ci95"][1], 5e-4)
    d93 = wj["dept93_vs_region"]
    assert metric_close(page, "department_ratio_93", d93["ratio"], 5e-4)
    assert metric_close(page, "department_ratio_93_ci_low", d93["ci95"][0], 5e-4)
    assert metric_close(page, "department_ratio_93_ci_high", d93["ci95"][1], 5e-4)
    assert metric_close(page, "department_standardised_ratio_93", d93["standardised_ratio"], 5e-4)
    check_ratio_is_rate_over_region(page, "93")
    top = wj["top_decile_cost"]
    for group, share in top["cost_share_by_group"].items():
        key = f"cost_share_top_{group}"
        if key in rp.metrics(page):
            assert metric_close(page, key, share, 5e-5)
    assert "cost_share_top_COPD" in rp.metrics(page)
    assert metric_close(page, "cost_top_threshold", top["threshold_euros"], 5e-3)
    assert report["numbers"]["readmission_rate"] == wj["readmission_rate"]


def metric_close(page: str, key: str, expected: float, tol: float) -> bool:
    value = rp.metric_value(page, key)
    ok = math.isclose(value, expected, abs_tol=tol)
    if not ok:
        print(f"{key}: page {value} vs {expected}")
    return ok


def check_ratio_is_rate_over_region(page: str, dept: str) -> None:
    m = rp.metrics(page)
    n, x = float(m[f"department_index_stays_{dept}"][0][0]), float(m[f"department_readmissions_{dept}"][0][0])
    big_n, big_x = rp.metric_value(page, "index_stays"), rp.metric_value(page, "readmissions")
    assert math.isclose(rp.metric_value(page, f"department_ratio_{dept}"), x / n / (big_x / big_n), rel_tol=1e-12)


def test_french_labels_come_from_the_seed(project: Paths, report: dict[str, Any]) -> None:
    con = duckdb.connect(str(project.warehouse), read_only=True)
    try:
        label = con.execute(
            "select icd10_label_fr from ref.ref_diagnosis_groups where icd10_category = 'J44'").fetchone()
    finally:
        con.close()
    assert label is not None
    assert label[0] in report["page"]
    assert "BPCO" in report["page"]


def test_trend_cells_published_or_suppressed_like_the_mart(project: Paths, report: dict[str, Any]) -> None:
    table = rp.cells(report["page"])
    con = duckdb.connect(str(project.warehouse), read_only=True)
    try:
        mart = con.execute("select department, strftime(discharge_month, '%Y-%m'), suppressed, readmissions_masked, "
                           "patients from marts.agg_department_kpis").fetchall()
    finally:
        con.close()
    n_suppressed = n_masked = 0
    for dept, month, suppressed, readmissions_masked, patients in mart:
        css, attrs, inner = table[f"{dept}|{month}"]
        if suppressed:
            n_suppressed += 1
            assert "suppressed" in css
            assert 'data-suppressed="true"' in attrs
            assert inner == "&lt;10 pts", inner
        elif readmissions_masked:  # 1-9 readmitted patients: no readmission figure
            n_masked += 1
            assert 'data-masked="true"' in attrs
            assert inner == "masked", inner
        else:
            assert patients >= 10
            assert rp.METRIC.search(inner), inner
    assert n_suppressed > 0, "the small warehouse has suppressed department x month cells"
    assert n_masked > 0, "and cells with 1-9 readmitted patients"


def test_headline_numbers_returned(report: dict[str, Any]) -> None:
    numbers = report["numbers"]
    assert numbers["dashboard"] == f"reports/{DASHBOARD_FILE}"
    assert numbers["sections_without_input"] == []
    assert numbers["suppressed_cells"]["department_month"] > 0
    assert numbers["top_cost_group"]["group"] == "COPD"


def test_confusion_matrix_and_classification_report_drawn(report: dict[str, Any]) -> None:
    assert '"fig-confusion"' in report["page"]
    assert '"fig-classification-report"' in report["page"]


def test_hospitals_placed_inside_their_department(project: Paths) -> None:
    depts = geo.departments(geo.load_geojson())
    con = duckdb.connect(str(project.warehouse), read_only=True)
    try:
        hospitals = con.execute("select hospital_id, department from marts.dim_hospitals").fetchall()
    finally:
        con.close()
    import numpy as np

    for code, dept in depts.items():
        ids = [h for h, d in hospitals if d == code]
        points = geo.place(dept, ids)
        assert set(points) == set(ids)
        if ids:
            assert geo.contains(dept, np.array(list(points.values()))).all(), code
            assert geo.place(dept, list(reversed(ids))) == points, "deterministic, order-free"
        assert geo.contains(dept, np.array([geo.label_point(dept)])).all()


def test_report_section_reaches_the_model() -> None:
    custom = Params.model_validate({"report": {"min_cell_patients": 20, "top_n_diagnoses": 5}})
    assert (custom.report.min_cell_patients, custom.report.top_n_diagnoses) == (20, 5)
    assert custom.report.top_features == 15  # untouched keys keep their defaults


# ---- a hand-made warehouse: standouts, suppression, missing inputs --------------------------

@pytest.fixture
def tiny(tmp_path: Path) -> Paths:
    patients = dict.fromkeys(rfx.DEPARTMENTS, 300)
    patients["95"] = 5  # a small department: suppressed everywhere
    rates = dict.fromkeys(rfx.DEPARTMENTS, 0.08)
    rates["77"] = 0.20  # the department that stands out here (not 93)
    return rfx.tiny_warehouse(tmp_path / "tiny", patients, rates)


def _render(paths: Paths, params: Params | None = None) -> str:
    run_report(paths, params or Params())
    return (paths.reports / DASHBOARD_FILE).read_text(encoding="utf-8")


def test_the_standout_department_comes_from_the_data(tiny: Paths) -> None:
    page = _render(tiny)
    findings = page[page.index('id="findings"'):page.index('id="departments"')]
    assert "Department 77" in findings
    assert "Department 93" not in findings
    excess = rp.metric_value(page, "department_excess_77")
    assert excess > 0.5
    assert rp.metric_value(page, "department_excess_77_ci_low") > 0
    assert re.search(r'<li class="department above"', findings)


def test_small_cells_show_no_number(tiny: Paths) -> None:
    page = _render(tiny)
    m = rp.metrics(page)
    # Department 95 has 5 patients: no tagged figure, a suppressed row, not in the bar chart.
    assert not [k for k in m if re.search(r"_95(_|$)", k)]
    row = re.search(r'<tr data-department="95">(.*?)</tr>', page, re.S)
    assert row is not None
    tds = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert tds[0] == "95"
    assert tds[2:] == ["&lt;10 pts"]
    assert 'data-suppressed="true"' in row.group(1)
    newplot = re.search(r'Plotly.newPlot\(\s*"fig-departments",\s*(\[.*?\]),\s*\{', page, re.S)
    assert newplot is not None
    assert '95<br>' not in newplot.group(1)
    # Z99 has 3 patients per department but 3 * 7 + 3 >= 10 overall: published; a rarer code is not.
    assert "diagnosis_patients_Z99" in m
    # Every department x month cell of 95 is suppressed and shows no number.
    for key, (css, _attrs, inner) in rp.cells(page).items():
        if key.startswith("95|"):  # a suppressed cell, or no index stay at all that month
            assert ("suppressed" in css and "data-value" not in inner) or inner == "", (key, inner)
    # Fairness (no monitor outputs here): the section says the stage has not run.
    assert 'data-stage="monitor"' in page


def test_rare_diagnosis_is_suppressed(tmp_path: Path) -> None:
    patients = dict.fromkeys(rfx.DEPARTMENTS, 200)
    paths = rfx.tiny_warehouse(tmp_path / "rare", patients, dict.fromkeys(rfx.DEPARTMENTS, 0.1), rare_patients=1)
    page = _render(paths)
    assert "diagnosis_patients_Z99" not in rp.metrics(page), "8 patients: suppressed, not ranked"
    assert "Z99" not in page[page.index('id="diagnoses"'):page.index('id="trend"')]
    assert "1 suppressed" in page


def test_fairness_groups_under_the_threshold_are_suppressed(tmp_path: Path) -> None:
    root = tmp_path / "fair"
    paths = rfx.tiny_warehouse(root, dict.fromkeys(rfx.DEPARTMENTS, 100), dict.fromkeys(rfx.DEPARTMENTS, 0.1))
    rfx.write_stage_outputs(paths)
    fairness = json.loads((paths.reports / "monitoring" / "fairness.json").read_text())
    rows = fairness["groups"]["department"]["groups"]
    rows[0] = {**rows[0], "patients": 7, "n": 7, "suppressed": False}  # our rule applies even if not flagged
    (paths.reports / "monitoring" / "fairness.json").write_text(json.dumps(fairness))
    page = _render(paths)
    section = page[page.index('id="fairness"'):page.index('id="drift"')]
    for group in (rows[0]["group"], "95"):
        row = re.search(rf'<tr data-group="{group}">(.*?)</tr>', section, re.S)
        assert row is not None, group
        assert 'data-suppressed="true"' in row.group(1), group
    fig = re.search(r'Plotly.newPlot\(\s*"fig-fairness",\s*(\[.*?\]),\s*\{', section, re.S)
    assert fig is not None
    data = json.loads(fig.group(1))
    for trace in data:
        assert trace["y"][0] is None
        assert trace["y"][-1] is None


def test_missing_optional_inputs_say_the_stage_has_not_run(tmp_path: Path, project: Paths) -> None:
    root = tmp_path / "bare"
    (root / "data").mkdir(parents=True)
    shutil.copy2(project.warehouse, root / "data" / "warehouse.duckdb")
    paths = Paths(root)
    numbers = run_report(paths, Params())
    page = (paths.reports / DASHBOARD_FILE).read_text(encoding="utf-8")
    assert rp.resources(page).sections == list(section_ids())
    for stage in ("evaluate", "monitor", "promote"):
        assert f'data-stage="{stage}"' in page, stage
    assert "The promote stage has not run yet" in page
    assert set(numbers["sections_without_input"]) == {"evaluate", "monitor", "promote", "train"}
    assert rp.external_loads(page) == []


def test_unreadable_input_is_reported_not_fatal(tmp_path: Path) -> None:
    paths = rfx.tiny_warehouse(tmp_path / "bad", dict.fromkeys(rfx.DEPARTMENTS, 50),
                               dict.fromkeys(rfx.DEPARTMENTS, 0.1))
    (paths.reports).mkdir(parents=True, exist_ok=True)
    (paths.reports / "promotion.json").write_text("{not json")
    page = _render(paths)
    assert "could not be read" in page
    assert 'data-stage="promote"' in page


def test_missing_warehouse_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="warehouse"):
        run_report(Paths(tmp_path), Params())


# ---- the project's own data, when it has been built -----------------------------------------

def test_department_93_stands_out_at_default_scale(tmp_path: Path) -> None:
    """At the default scale the data (not the code) makes 93 the department above the region."""
    warehouse, metrics_file = PROJECT / "data" / "warehouse.duckdb", PROJECT / "reports" / "metrics" / "warehouse.json"
    if not warehouse.is_file() or not metrics_file.is_file():
        pytest.skip("the project's warehouse has not been built (dvc repro)")
    wj = json.loads(metrics_file.read_text())
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:  # being rebuilt by a running `dvc repro`
        pytest.skip(f"project warehouse busy: {exc}")
    try:
        n_index = con.execute("select count(*) from marts.fct_readmissions where is_index").fetchone()
    finally:
        con.close()
    if n_index is None or n_index[0] != wj["index_stays"] or wj["index_stays"] < 20000:
        pytest.skip("warehouse.json does not describe this warehouse at the default scale")
    root = tmp_path / "default"
    (root / "data").mkdir(parents=True)
    shutil.copy2(warehouse, root / "data" / "warehouse.duckdb")
    page = _render(Paths(root))
    findings = page[page.index('id="findings"'):page.index('id="departments"')]
    assert "Department 93 (Seine-Saint-Denis)" in findings
    d93 = wj["dept93_vs_region"]
    assert math.isclose(rp.metric_value(page, "department_excess_93") + 1, d93["ratio"], abs_tol=5e-4)
    assert math.isclose(rp.metric_value(page, "department_excess_93_ci_low") + 1, d93["ci95"][0], abs_tol=5e-4)
    assert math.isclose(rp.metric_value(page, "department_excess_93_ci_high") + 1, d93["ci95"][1], abs_tol=5e-4)
    excesses = {k: rp.metric_value(page, k) for k in rp.metrics(page) if re.fullmatch(r"department_excess_\d\d", k)}
    assert max(excesses, key=lambda k: excesses[k]) == "department_excess_93"


def test_refused_first_challenger_has_no_champion(tmp_path: Path) -> None:
    paths = rfx.tiny_warehouse(tmp_path / "refused", dict.fromkeys(rfx.DEPARTMENTS, 50),
                               dict.fromkeys(rfx.DEPARTMENTS, 0.2))
    paths.reports.mkdir(parents=True, exist_ok=True)
    (paths.reports / "promotion.json").write_text(json.dumps({
        "decision": "refused", "challenger_version": "1", "champion_version": None, "previous_version": None,
        "model_name": "idf-readmission-rf", "reasons": ["recall 0.41 < gate 0.50"]}))
    page = _render(paths)
    section = page[page.index('id="promotion"'):]
    assert "vNone" not in page
    assert 'data-metric="promotion_decision" data-value="refused"' in section
    assert "recall 0.41 &lt; gate 0.50" in section
    assert "previous champion none" in section
