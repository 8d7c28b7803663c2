"""run_monitor end to end on a synthetic mart and a small fitted model (no other stage needed)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sklearn.metrics import precision_score, recall_score

from pipelines import contracts
from pipelines.config import Params, Paths
from pipelines.config.monitor import FEATURES
from pipelines.model.pyfunc_model import predict_frame
from pipelines.monitor import MonitorInputError, run_monitor, to_pandas
from pipelines.train import load_model
from tests.model.monitor_fixtures import DRIFTED, make_frame, plant_drift, write_mart, write_model

TRAIN_END, VALID_END = date(2023, 10, 1), date(2024, 4, 1)
LABEL, DATE = contracts.FEATURE_LABEL, contracts.FEATURE_SPLIT_DATE
OUTPUTS = ("reports/monitoring/drift.html", "reports/monitoring/drift.json", "reports/monitoring/fairness.json",
           "reports/monitoring/fairness.html", "reports/metrics/monitoring.json")


def build_project(root: Path) -> pl.DataFrame:
    frame = make_frame(6000, seed=11)
    before = frame.filter(pl.col(DATE) < VALID_END)
    after = plant_drift(frame.filter(pl.col(DATE) >= VALID_END), seed=12)
    mart = pl.concat([before, after])
    write_mart(root, mart)
    write_model(root, mart.filter(pl.col(DATE) < TRAIN_END), TRAIN_END, VALID_END, threshold=0.5)
    return mart


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, pl.DataFrame, dict[str, Any]]:
    root = tmp_path_factory.mktemp("monitor")
    mart = build_project(root)
    summary = run_monitor(Paths(root), Params())
    return root, mart, summary


def read(root: Path, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / rel).read_text(encoding="utf-8"))
    return data


def test_writes_every_output(project):
    root, _, summary = project
    for rel in OUTPUTS:
        assert (root / rel).stat().st_size > 0, rel
    assert summary == read(root, "reports/metrics/monitoring.json")


def test_drift_report_flags_the_planted_columns_only(project):
    root, mart, _ = project
    drift = read(root, "reports/monitoring/drift.json")
    columns = drift["data_drift"]["columns"]
    assert set(columns) == set(FEATURES)
    for name in DRIFTED:
        assert columns[name]["drifted"] is True, name
    for name in ("department", "deprivation_rate", "sex"):
        assert columns[name]["drifted"] is False, name
    for entry in columns.values():
        assert {"method", "statistic", "threshold", "drifted", "statistic_kind", "type"} <= set(entry)
    assert drift["windows"]["reference"] == {"start": None, "end": TRAIN_END.isoformat(),
                                             "rows": mart.filter(pl.col(DATE) < TRAIN_END).height}
    assert drift["windows"]["current"]["rows"] == mart.filter(pl.col(DATE) >= VALID_END).height
    assert drift["windows"]["source"] == "model_meta.json"
    assert drift["target_drift"]["column"] == LABEL
    assert drift["prediction_drift"]["reference"] == "validation"


def scored_current(root: Path, mart: pl.DataFrame) -> pl.DataFrame:
    bundle, _ = load_model(Paths(root))
    current = mart.filter(pl.col(DATE) >= VALID_END)
    pred = predict_frame(bundle, to_pandas(current, FEATURES))
    return current.with_columns(high_risk=pl.Series(pred["high_risk"].to_numpy()),
                                probability=pl.Series(pred["probability"].to_numpy()))


def test_model_quality_and_department_fairness_match_sklearn(project):
    root, mart, summary = project
    current = scored_current(root, mart)
    y, flag = current[LABEL].to_numpy(), current["high_risk"].to_numpy()
    quality = read(root, "reports/monitoring/drift.json")["model_quality"]
    assert quality["available"] is True
    assert quality["metrics"]["recall"] == pytest.approx(recall_score(y, flag), abs=1e-6)
    assert quality["evidently"]["recall"] == pytest.approx(recall_score(y, flag), abs=1e-6)
    assert summary["current_precision"] == pytest.approx(precision_score(y, flag), abs=1e-6)

    fairness = read(root, "reports/monitoring/fairness.json")
    rows = {r["group"]: r for r in fairness["groups"]["department"]["groups"]}
    assert set(rows) == set(contracts.IDF_DEPARTMENTS)
    recalls = []
    for dept, row in rows.items():
        part = current.filter(pl.col("department") == dept)
        expected = recall_score(part[LABEL].to_numpy(), part["high_risk"].to_numpy())
        assert row["recall"] == pytest.approx(expected, abs=1e-6)
        recalls.append(expected)
    ratio = min(recalls) / max(recalls)
    assert summary["department_recall_ratio"] == pytest.approx(ratio, abs=1e-6)
    assert fairness["groups"]["department"]["parity"]["recall"]["ratio"] == pytest.approx(ratio, abs=1e-6)
    assert "not a legal test" in fairness["four_fifths"]["kind"]
    assert set(fairness["groups"]) == {"department", "sex", "age_band"}


def test_flat_metrics_for_dvc(project):
    _, _, summary = project
    for key in ("dataset_drift", "drift_share", "n_drifted_columns", "current_recall", "current_precision",
                "department_recall_ratio"):
        assert key in summary
    assert summary["n_drifted_columns"] >= len(DRIFTED)
    assert all(not isinstance(v, dict | list) for v in summary.values())


def test_json_is_stable_sorted_rounded_and_undated(project, tmp_path):
    root, _, _ = project
    second = tmp_path / "again"
    build_project(second)
    run_monitor(Paths(second), Params())
    for rel in OUTPUTS:
        if not rel.endswith(".json"):
            continue
        text = (root / rel).read_text(encoding="utf-8")
        assert text == (second / rel).read_text(encoding="utf-8"), f"{rel}: bytes differ between two runs"
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert not re.search(r"\d\d:\d\d:\d\d", text), f"{rel}: holds a time of day"
        assert not re.search(r"\d\.\d{7,}", text), f"{rel}: float not rounded"


def test_html_pages_are_self_contained(project):
    root, _, _ = project
    for rel in ("reports/monitoring/drift.html", "reports/monitoring/fairness.html"):
        text = (root / rel).read_text(encoding="utf-8")
        assert not re.search(r"<script[^>]+src=", text), f"{rel}: loads a script from elsewhere"
        assert not re.search(r"<link[^>]+href=\"?https?:", text), f"{rel}: loads a stylesheet from elsewhere"
        assert len(text) > 1_000_000, f"{rel}: the JavaScript is not inlined"
    fairness = (root / "reports/monitoring/fairness.html").read_text(encoding="utf-8")
    assert "heuristic" in fairness.lower()
    assert "Plotly.newPlot" in fairness


def test_explicit_windows_and_empty_window_error(tmp_path):
    build_project(tmp_path)
    params = Params.model_validate({"monitor": {"current_start": "2030-01-01"}})
    with pytest.raises(MonitorInputError, match="current window"):
        run_monitor(Paths(tmp_path), params)
