"""The shared figures: the model's figures of evaluate and the dashboard, one theme, the small-cell rule."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import classification_report as sk_report

from pipelines.dashboard import figures as dash
from pipelines.dashboard.data import MonthStat, Trend
from pipelines.figures import export
from pipelines.figures import model as figs
from pipelines.figures.fairness import fairness_figure
from pipelines.figures.theme import TEMPLATE


@pytest.mark.parametrize("counts", [(1020, 170, 49, 61), (0, 0, 3, 4), (5, 0, 0, 0), (7, 0, 0, 9)])
def test_classification_report_from_counts_is_sklearns_on_the_labels(counts: tuple[int, int, int, int]) -> None:
    tn, fp, fn, tp = counts
    y = np.repeat([0, 0, 1, 1], counts)
    pred = np.repeat([0, 1, 0, 1], counts)
    theirs = sk_report(y, pred, labels=[0, 1], target_names=figs.CLASS_NAMES, output_dict=True, zero_division=0)
    theirs.pop("accuracy", None)
    assert figs.classification_report(tn, fp, fn, tp) == theirs  # exactly: the figure's numbers do not move


def test_classification_report_values() -> None:
    report = figs.classification_report(1020, 170, 49, 61)
    assert report["readmitted"]["precision"] == pytest.approx(61 / 231)
    assert report["readmitted"]["recall"] == pytest.approx(61 / 110)
    assert report["not readmitted"]["support"] == 1190
    assert list(report) == ["not readmitted", "readmitted", "macro avg", "weighted avg"]


@pytest.mark.parametrize("min_cell", [10, 50])
def test_confusion_cells_under_the_threshold_are_hidden(min_cell: int) -> None:
    fig = figs.confusion_figure(1020, 170, 49, 61, min_cell, 0.25)
    heat = fig.data[0]
    hidden = min_cell > 49
    assert heat.z[1][0] is None if hidden else heat.z[1][0] == 49
    assert heat.text[1][0] == (f"<{min_cell}" if hidden else "49")
    assert heat.text[0][0] == "1,020"
    assert fig.layout.template == TEMPLATE


def test_trend_heatmap_notes_use_the_threshold() -> None:
    month = date(2024, 1, 1)
    cells = [MonthStat(month, "75", True, None, None, None, None, None),
             MonthStat(month, "92", False, 40, 30, None, None, None, masked=True)]
    trend = Trend([], cells, [month], 3, [], None, None, None, None)
    notes = dash.trend_heatmap(trend, {"75": "Paris"}, 20).data[0].customdata
    assert [row[0] for row in notes] == [" suppressed (<20 patients)", " masked (<20 readmitted patients)"]


def test_importance_error_bars_follow_the_sorted_features() -> None:
    fig = figs.importance_figure({"age": 0.05, "los": 0.01, "sex": -0.002}, 3, errors={"age": 0.5, "los": 0.1,
                                                                                     "sex": 0.2})
    bar = fig.data[0]
    assert list(bar.y) == ["sex", "los", "age"]  # largest at the top of a horizontal bar chart
    assert list(bar.error_x.array) == [0.2, 0.1, 0.5]
    assert figs.importance_figure({"age": 0.05}, 3).data[0].error_x.array is None


def test_operating_points() -> None:
    rf = {"recall": 0.5, "precision": 0.2, "threshold": 0.123456}
    points = figs.operating_points(rf, {"recall": 0.3, "precision": 0.25, "cutoff": 10})
    assert points == [("RF operating point (threshold 0.123)", 0.5, 0.2), ("LACE ≥ 10", 0.3, 0.25)]
    assert figs.operating_points({"recall": None, "precision": 0.2}, {}) == []


def test_fairness_figure_hides_suppressed_groups() -> None:
    rows = [{"group": "75", "recall": 0.7, "precision": 0.3, "selection_rate": 0.2, "suppressed": False},
            {"group": "77", "recall": 0.9, "precision": 0.5, "selection_rate": 0.1, "suppressed": True}]
    fig = fairness_figure(rows, 10, group_label="department", title="t")
    assert [t.name for t in fig.data] == ["recall", "precision", "selection rate"]
    assert [list(t.y) for t in fig.data] == [[0.7, None], [0.3, None], [0.2, None]]
    notes = [a.text for a in fig.layout.annotations]
    assert notes == ["suppressed<br>(<10 patients)"]
    assert fig.layout.annotations[0].x == 1


def test_figure_files_have_the_same_bytes_on_every_run(tmp_path: Path) -> None:
    """plotly names each figure's div with a random uuid unless told: the files are DVC outputs."""
    fig = fairness_figure([{"group": "75", "recall": 0.7, "precision": 0.3, "selection_rate": 0.2,
                            "suppressed": False}], 10, title="t")
    pages = []
    for run in ("a", "b"):
        export.write_figures({"fairness by dept": fig}, tmp_path / run)
        pages.append((tmp_path / run / "fairness by dept.html").read_bytes())
    assert pages[0] == pages[1]
    assert b'id="fig-fairness-by-dept"' in pages[0]
    assert export.combined_html({"x y": fig}, "t") == export.combined_html({"x y": fig}, "t")
