"""The dashboard in a real browser: headless Chromium (Debian's package) driven by playwright.

Skipped, with the reason, when /usr/bin/chromium is absent (scripts/install-browser.sh installs
it; never `playwright install`). Every request the page makes is recorded and anything but the
file itself is aborted, so a CDN or web-font load shows up as a failure, not a silent fetch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Params, Paths
from pipelines.dashboard.page import section_ids
from pipelines.report import DASHBOARD_FILE, run_report
from tests.report import report_page as rp
from tests.support import report_fixtures as rfx

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} not found: run scripts/install-browser.sh (as root)")


@pytest.fixture(scope="module")
def rendered(report_project: Paths, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from playwright import sync_api

    paths = report_project
    numbers = run_report(paths, Params())
    page_file = paths.reports / DASHBOARD_FILE
    shots = tmp_path_factory.mktemp("screenshots")
    console: list[tuple[str, str]] = []
    page_errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
            page = context.new_page()
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: page_errors.append(str(e)))

            def route(r: Any) -> None:
                requests.append(r.request.url)
                if r.request.url.startswith(LOCAL_SCHEMES):
                    r.continue_()
                else:
                    r.abort()

            page.route("**/*", route)
            page.goto(page_file.as_uri(), wait_until="load")
            expected = numbers["figures"]
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}", timeout=30_000)
            page.wait_for_timeout(500)  # let the last relayouts settle
            visible = {sid: page.locator(f"section#{sid}").is_visible() for sid in section_ids()}
            sections_text = {sid: page.locator(f"section#{sid}").inner_text() for sid in section_ids()}
            plots = page.locator(".js-plotly-plot").count()
            svg_plots = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                      ".filter(d => d.querySelector('.main-svg') && d.getBoundingClientRect()"
                                      ".height > 100).length")
            map_paths = page.locator("#fig-map path.choroplethlocation").count()
            dom_metrics = page.evaluate(
                "Array.from(document.querySelectorAll('[data-metric]')).map(e => "
                "[e.dataset.metric, e.dataset.value, e.textContent])")
            screenshot = shots / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            context.close()
        finally:
            browser.close()
    return {"paths": paths, "numbers": numbers, "console": console, "page_errors": page_errors,
            "requests": requests, "visible": visible, "text": sections_text, "plots": plots,
            "svg_plots": svg_plots, "map_paths": map_paths, "metrics": dom_metrics, "screenshot": screenshot}


def test_no_console_or_page_errors(rendered: dict[str, Any]) -> None:
    assert rendered["page_errors"] == []
    assert [(t, m) for t, m in rendered["console"] if t in ("error", "warning")] == []


def test_nothing_is_fetched_from_the_network(rendered: dict[str, Any]) -> None:
    assert rendered["requests"], "the page itself was requested"
    assert [u for u in rendered["requests"] if not u.startswith(LOCAL_SCHEMES)] == []


def test_every_section_is_visible(rendered: dict[str, Any]) -> None:
    assert rendered["visible"] == dict.fromkeys(section_ids(), True)
    for sid, text in rendered["text"].items():
        assert len(text.strip()) > 40, sid
        assert "has not run" not in text, sid  # every input exists in this project


def test_every_plotly_figure_is_drawn(rendered: dict[str, Any]) -> None:
    n = rendered["numbers"]["figures"]
    assert rendered["plots"] == n >= 12
    assert rendered["svg_plots"] == n
    assert rendered["map_paths"] >= 8 + 4, "the 8 departments, and the inner ring again, drawn offline"


def test_screenshot_is_produced(rendered: dict[str, Any]) -> None:
    shot: Path = rendered["screenshot"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert width == 1440
    assert height > 3000


def test_numbers_in_the_browser_equal_the_marts(rendered: dict[str, Any]) -> None:
    expected = rp.expected_from_marts(rendered["paths"].warehouse)
    seen = 0
    for key, value, text in rendered["metrics"]:
        if key in expected:
            assert value, key
            assert text.strip(), key
            assert math.isclose(float(value), expected[key], rel_tol=1e-9, abs_tol=1e-9), (key, value, expected[key])
            seen += 1
    keys = {k for k, _, _ in rendered["metrics"]}
    assert {"readmission_rate", "stays", "patients", "total_cost"} <= keys
    assert all(f"department_rate_{d}" in keys for d in rfx.DEPARTMENTS)
    complete = ("month_rate_", "department_rate_", "cost_share_top_")
    assert [k for k in expected if k.startswith(complete) and k not in keys] == []
    assert seen > 150
