"""The monitor stage's steps one at a time (tests/test_monitor_stage.py runs the whole stage)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from pipelines import contracts
from pipelines.config import Params, Paths
from pipelines.model.artifacts import load_model
from pipelines.monitor import (
    Drift,
    MonitorInputError,
    Window,
    Windows,
    drift_report,
    drift_step,
    fairness_step,
    model_block,
    resolve_windows,
    score,
    window_block,
    window_frames,
)
from tests.model.monitor_fixtures import make_frame, plant_drift, write_model

TRAIN_END, VALID_END = date(2023, 10, 1), date(2024, 4, 1)
DATE = contracts.FEATURE_SPLIT_DATE
PARAMS = Params()


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, pl.DataFrame, Windows, dict[str, pl.DataFrame]]:
    root = tmp_path_factory.mktemp("monitor-steps")
    frame = make_frame(3000, seed=5)
    mart = pl.concat([frame.filter(pl.col(DATE) < VALID_END),
                      plant_drift(frame.filter(pl.col(DATE) >= VALID_END), seed=6)])
    write_model(root, mart.filter(pl.col(DATE) < TRAIN_END), TRAIN_END, VALID_END, threshold=0.5)
    paths = Paths(root)
    bundle, meta = load_model(paths)
    windows = resolve_windows(PARAMS.monitor, meta, PARAMS)
    frames = window_frames(mart, windows)
    return paths, mart, windows, {name: score(bundle, f) for name, f in frames.items()}


def test_window_frames_split_by_discharge_date(scored: tuple[Paths, pl.DataFrame, Windows,
                                                             dict[str, pl.DataFrame]]) -> None:
    _, mart, windows, frames = scored
    assert windows.source == "model_meta.json"
    assert frames["reference"][DATE].max() < TRAIN_END
    assert frames["current"][DATE].min() >= VALID_END
    assert TRAIN_END <= frames["valid"][DATE].min() <= frames["valid"][DATE].max() < VALID_END
    assert sum(f.height for f in frames.values()) == mart.height  # the default windows tile the mart
    for frame in frames.values():
        assert frame["high_risk"].to_list() == [int(p >= 0.5) for p in frame["probability"].to_list()]


def test_an_empty_window_is_refused(scored: tuple[Paths, pl.DataFrame, Windows, dict[str, pl.DataFrame]]) -> None:
    _, mart, windows, _ = scored
    late = Windows(windows.reference, Window("current", date(2030, 1, 1), None), windows.valid, "params.monitor")
    with pytest.raises(MonitorInputError, match=r"the current window \(2030-01-01 \(incl\.\) to end of data"):
        window_frames(mart, late)


def test_drift_then_reports(scored: tuple[Paths, pl.DataFrame, Windows, dict[str, pl.DataFrame]]) -> None:
    paths, _, windows, frames = scored
    drift = drift_step(frames, PARAMS.monitor, 0.5)
    assert isinstance(drift, Drift)
    assert drift.prediction_reference == "valid"
    assert len(drift.sections) == 3  # data drift, prediction drift, model quality (current is labelled)
    assert drift.data_drift["columns"]["age"]["drifted"]  # planted
    assert "target" in drift.data_drift
    assert drift.model_quality["available"]

    _, meta = load_model(paths)
    model = model_block(meta, 0.5)
    assert model == {"version": meta.version, "model_name": "test-model", "threshold": 0.5,
                     "train_end": "2023-10-01", "valid_end": "2024-04-01"}
    info = window_block(windows, frames, drift)
    assert info["current"]["rows"] == frames["current"].height
    assert info["prediction_reference"] == {"start": "2023-10-01", "end": "2024-04-01", "rows": frames["valid"].height}
    report = drift_report(info, model, drift)
    assert report["target_drift"] == drift.data_drift["target"]
    assert "target" not in report["data_drift"]
    assert "target" in drift.data_drift  # the step's output is not changed by the report

    fairness = fairness_step(frames["current"], PARAMS.monitor, "patient_id" in frames["current"].columns)
    assert set(fairness["groups"]) == set(PARAMS.monitor.fairness_groups)
    assert fairness["rows"] == frames["current"].height
    departments = fairness["groups"]["department"]["groups"]
    assert sum(g["n"] for g in departments) == frames["current"].height  # every row in one department
    assert sum(g["flagged"] for g in departments) == int(frames["current"]["high_risk"].sum())


def test_prediction_drift_falls_back_without_a_validation_window(
        scored: tuple[Paths, pl.DataFrame, Windows, dict[str, pl.DataFrame]]) -> None:
    _, _, windows, frames = scored
    no_valid = {**frames, "valid": frames["valid"].head(0)}
    drift = drift_step(no_valid, PARAMS.monitor, 0.5)
    assert drift.prediction_reference == "train"
    info = window_block(windows, no_valid, drift)
    assert info["prediction_reference"]["rows"] == frames["reference"].height


def test_monitor_writes_through_the_fixture_root(tmp_path: Path) -> None:
    """write_model's files read back through the typed readers (the monitor fixture's contract)."""
    train = make_frame(600, seed=2).filter(pl.col(DATE) < TRAIN_END)
    write_model(tmp_path, train, TRAIN_END, VALID_END, threshold=0.4, version="9")
    bundle, meta = load_model(Paths(tmp_path))
    assert (bundle.threshold, meta.version, meta.train_end) == (0.4, "9", TRAIN_END)
