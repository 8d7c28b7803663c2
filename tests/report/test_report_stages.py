"""The dashboard on the real outputs of features -> train -> evaluate -> monitor (small budgets).

The other report tests use inputs written in those stages' shapes; this one runs the stages
themselves on the small warehouse, so a change of their output keys shows up here.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Params, Paths
from pipelines.dashboard.page import section_ids
from pipelines.report import DASHBOARD_FILE, run_report
from tests.report import report_page as rp
from tests.support import report_fixtures as rfx

pytestmark = pytest.mark.slow

PARAMS: dict[str, Any] = {
    "train": {"n_trials": 2, "optuna_plots": False,
              "search": {"n_estimators": [15, 30], "max_depth": [4, 8], "min_samples_leaf": [10, 60]}},
    "evaluate": {"permutation_repeats": 2, "png": False, "log_to_mlflow": False},
}


@pytest.fixture(scope="module")
def staged(small_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipelines.evaluate import run_evaluate
    from pipelines.features import run_features
    from pipelines.monitor import run_monitor
    from pipelines.train import run_train

    source = Paths(small_project)
    root = tmp_path_factory.mktemp("staged")
    (root / "data").mkdir()
    shutil.copy2(source.warehouse, root / "data" / "warehouse.duckdb")
    shutil.copytree(source.truth, root / "data" / "truth")
    paths = Paths(root)
    params = Params.model_validate({**rfx.small_params().model_dump(mode="json"), **PARAMS})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("DO_NOT_TRACK", "1")
        run_features(paths, params)
        run_train(paths, params)
        run_evaluate(paths, params)
        run_monitor(paths, params)
    numbers = run_report(paths, params)
    return {"paths": paths, "numbers": numbers, "page": (paths.reports / DASHBOARD_FILE).read_text("utf-8")}


def test_only_the_promotion_is_missing(staged: dict[str, Any]) -> None:
    page = staged["page"]
    assert rp.resources(page).sections == list(section_ids())
    assert staged["numbers"]["sections_without_input"] == ["promote"]
    assert page.count('class="notice stage-missing"') == 1
    assert 'data-stage="promote"' in page
    for fig_id in ("fig-confusion", "fig-classification-report", "fig-pr", "fig-importance", "fig-fairness"):
        assert f'"{fig_id}"' in page, fig_id
    assert rp.external_loads(page) == []


def test_model_numbers_equal_evaluate_json(staged: dict[str, Any]) -> None:
    paths: Paths = staged["paths"]
    evaluation = json.loads((paths.metrics / "evaluate.json").read_text())
    page = staged["page"]
    rf = evaluation["rf"]
    for key, expected in (("model_recall", rf["recall"]), ("model_precision", rf["precision"]),
                          ("model_roc_auc", rf["roc_auc"]), ("model_pr_auc", rf["pr_auc"]),
                          ("model_threshold", rf["threshold"]), ("lace_roc_auc", evaluation["lace"]["roc_auc"])):
        assert math.isclose(rp.metric_value(page, key), expected, rel_tol=1e-12), key
    drift = json.loads((paths.reports / "monitoring" / "drift.json").read_text())
    assert rp.metric_value(page, "drift_n_drifted_columns") == drift["data_drift"]["dataset"]["n_drifted_columns"]


def test_marts_numbers_still_equal(staged: dict[str, Any]) -> None:
    expected = rp.expected_from_marts(Path(staged["paths"].warehouse))
    for key, shown in rp.metrics(staged["page"]).items():
        if key in expected:
            for value, _ in shown:
                assert math.isclose(float(value), expected[key], rel_tol=1e-9, abs_tol=1e-9), key
