"""A small project root for the report tests: a real warehouse plus model/monitoring inputs.

`build_warehouse(root)` runs the real pipeline at a small scale (generate -> clean -> warehouse)
into `root`. `write_stage_outputs(root)` writes the optional inputs of the report (evaluate,
train, model meta, monitoring, promotion) in the exact shapes those stages write (see
pipelines/evaluate.py, pipelines/train.py, pipelines/monitor.py, pipelines/monitoring/fairness.py),
without training anything, so the report tests do not depend on the model stages' run time.

`small_project(base)` builds both once per test session (cached by folder) and returns the root.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pipelines.config import Params, Paths

PROJECT = Path(__file__).resolve().parents[2]
PATIENTS = 3000
_IGNORED = shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__", "*.duckdb*")
_BUILT: dict[Path, Path] = {}

DEPARTMENTS = ("75", "77", "78", "91", "92", "93", "94", "95")


def small_params() -> Params:
    return Params.model_validate({
        "generate": {"patients": PATIENTS, "chunk_patients": PATIENTS, "hospitals": 24},
    })


def build_warehouse(root: Path, params: Params | None = None) -> Paths:
    """generate -> clean -> warehouse with the project's real code and dbt project."""
    from pipelines.clean import run_clean
    from pipelines.generate import run_generate
    from pipelines.warehouse import run_warehouse

    params = params or small_params()
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT / "dbt", root / "dbt", ignore=_IGNORED, dirs_exist_ok=True)
    paths = Paths(root)
    run_generate(paths, params, progress=False)
    run_clean(paths, params.clean)
    run_warehouse(paths, params)
    return paths


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _group_row(group: str, n: int, patients: int, positives: int, flagged: int, tp: int) -> dict[str, Any]:
    recall = tp / positives if positives else None
    return {
        "group": group, "n": n, "patients": patients, "positives": positives, "flagged": flagged,
        "true_positives": tp, "recall": recall, "precision": tp / flagged if flagged else None,
        "false_negative_rate": None if recall is None else 1 - recall, "selection_rate": flagged / n,
        "brier": 0.08, "prevalence": positives / n, "suppressed": False,
    }


def _suppressed(group: str) -> dict[str, Any]:
    keys = ("n", "patients", "positives", "flagged", "true_positives", "recall", "precision",
            "false_negative_rate", "selection_rate", "brier", "prevalence")
    return {"group": group, **dict.fromkeys(keys), "suppressed": True}


def write_stage_outputs(paths: Paths, *, promotion: bool = True) -> None:
    """evaluate.json, pr_curve.csv, train.json, model_meta.json, drift/fairness/monitoring.json,
    promotion.json: the shapes of the real stages' outputs, values made up but coherent."""
    tp, fp, fn, tn = 61, 170, 49, 1020
    rf = {"recall": 0.5545, "precision": 0.2641, "f2": 0.4545, "pr_auc": 0.2312, "roc_auc": 0.7021,
          "brier": 0.0801, "flagged_share": 0.1777, "prevalence": 0.0846, "n": 1300, "threshold": 0.1234,
          "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    evaluate = {
        "rf": rf,
        "lace": {"roc_auc": 0.6312, "pr_auc": 0.1511, "cutoff": 10, "recall": 0.4, "precision": 0.15,
                 "f2": 0.3, "flagged_share": 0.23},
        "logreg": {**{k: v for k, v in rf.items() if k not in ("tp", "fp", "fn", "tn")}, "roc_auc": 0.69,
                   "threshold_rule": "min_precision"},
        "oracle": {**{k: v for k, v in rf.items() if k not in ("tp", "fp", "fn", "tn")}, "roc_auc": 0.74,
                   "pr_auc": 0.27, "coverage": 1.0, "threshold_rule": "min_precision"},
        "gap": {"roc_auc_oracle_minus_rf": 0.0379, "pr_auc_oracle_minus_rf": 0.0388,
                "rf_share_of_oracle_auc_lift": 0.84},
        "test_rows": 1300, "test_window_start": "2024-04-01", "model_version": "3",
        "permutation_importance": {"stay_cost": 0.061, "age": 0.032, "diagnosis_group": 0.021,
                                   "prior_stays_12m": 0.012, "deprivation_rate": 0.004, "sex": -0.001},
    }
    _write(paths.metrics / "evaluate.json", evaluate)
    lines = ["model,recall,precision"]
    for model, lift in (("rf", 2.6), ("logreg", 2.3), ("lace", 1.7), ("oracle", 3.0)):
        for i in range(21):
            recall = 1 - i / 20
            lines.append(f"{model},{recall:.4f},{min(1.0, 0.0846 * (1 + (lift - 1) * (1 - recall))):.4f}")
    (paths.reports / "plots").mkdir(parents=True, exist_ok=True)
    (paths.reports / "plots" / "pr_curve.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write(paths.metrics / "train.json", {"best_cv_objective": 0.52, "threshold": 0.1234, "model_version": "3",
                                          "threshold_rule": "min_precision", "min_precision": 0.25,
                                          "rows": {"train": 4000, "valid": 1200, "test": 1300}})
    meta = {"model_name": "idf-readmission-rf", "version": "3", "model_uri": "models:/idf-readmission-rf/3",
            "threshold": 0.1234, "threshold_rule": "min_precision", "min_precision": 0.25,
            "train_end": "2023-10-01", "valid_end": "2024-04-01", "seed": 1}
    _write(paths.models / "model_meta.json", meta)

    dept_rows = [_group_row(d, 160, 150, 14, 30, 8) for d in DEPARTMENTS[:-1]] + [_suppressed(DEPARTMENTS[-1])]
    dept_rows[5] = _group_row("93", 170, 160, 18, 40, 12)
    recalls = [r["recall"] for r in dept_rows if not r["suppressed"]]
    fairness = {
        "groups": {
            "department": {"groups": dept_rows, "n_suppressed": 1, "parity": {
                "recall": {"ratio": min(recalls) / max(recalls), "min": min(recalls), "max": max(recalls),
                           "min_group": "75", "max_group": "93", "n_groups": 7},
                "selection_rate": {"ratio": 0.8, "min": 0.18, "max": 0.24, "min_group": "75", "max_group": "93",
                                   "n_groups": 7},
                "precision": {"ratio": 0.9, "min": 0.27, "max": 0.3, "min_group": "75", "max_group": "93",
                              "n_groups": 7}}},
            "sex": {"groups": [_group_row("male", 600, 580, 55, 110, 30), _group_row("female", 700, 680, 55, 121, 31)],
                    "n_suppressed": 0, "parity": {"recall": {"ratio": 0.97, "min": 0.545, "max": 0.5636,
                                                             "min_group": "male", "max_group": "female",
                                                             "n_groups": 2}}},
        },
        "four_fifths": {"kind": "heuristic screening rule, not a legal test", "note": "Heuristic screening rule.",
                        "threshold": 0.8,
                        "checks": {"department": {"recall": {"ratio": min(recalls) / max(recalls), "passes": True},
                                                  "selection_rate": {"ratio": 0.8, "passes": True},
                                                  "precision": {"ratio": 0.9, "passes": True}},
                                   "sex": {"recall": {"ratio": 0.97, "passes": True}}},
                        "below_threshold": [], "any_below_threshold": False},
        "min_cell_patients": 10, "patients_counted_from": "stays (no patient id in the frame)", "rows": 1300,
        "rows_without_label": 0, "overall": _group_row("all", 1300, 1300, 110, 231, 61),
        "window": {"start": "2024-04-01", "end": None, "rows": 1300}, "model": {"version": "3"},
    }
    _write(paths.reports / "monitoring" / "fairness.json", fairness)
    columns = {
        "age": {"method": "Wasserstein distance (normed)", "statistic": 0.12, "statistic_kind": "distance",
                "threshold": 0.1, "drift_rule": "statistic >= threshold", "drifted": True, "type": "numerical"},
        "stay_cost": {"method": "Wasserstein distance (normed)", "statistic": 0.04, "statistic_kind": "distance",
                      "threshold": 0.1, "drift_rule": "statistic >= threshold", "drifted": False,
                      "type": "numerical"},
        "department": {"method": "chi-square p_value", "statistic": 0.41, "statistic_kind": "p_value",
                       "threshold": 0.05, "drift_rule": "statistic < threshold", "drifted": False,
                       "type": "categorical"},
    }
    drift = {
        "windows": {"source": "model_meta.json",
                    "reference": {"start": None, "end": "2023-10-01", "rows": 4000},
                    "current": {"start": "2024-04-01", "end": None, "rows": 1300},
                    "prediction_reference": {"start": "2023-10-01", "end": "2024-04-01", "rows": 1200}},
        "model": {"version": "3", "model_name": "idf-readmission-rf", "threshold": 0.1234},
        "data_drift": {"dataset": {"drifted": False, "rule": "share of drifted columns >= drift_share_threshold",
                                   "drift_share": 1 / 3, "drift_share_threshold": 0.5, "n_drifted_columns": 1,
                                   "n_columns": 3, "drifted_columns": ["age"]},
                       "columns": columns},
        "target_drift": {"method": "Z-test p_value", "statistic": 0.6, "statistic_kind": "p_value",
                         "threshold": 0.05, "drift_rule": "statistic < threshold", "drifted": False,
                         "column": "readmitted_30d", "type": "categorical", "reference_rate": 0.09,
                         "current_rate": 0.0846},
        "prediction_drift": {"method": "K-S p_value", "statistic": 0.2, "statistic_kind": "p_value",
                             "threshold": 0.05, "drift_rule": "statistic < threshold", "drifted": False,
                             "column": "probability", "type": "numerical", "reference": "validation",
                             "reference_mean": 0.1, "current_mean": 0.102, "reference_rows": 1200},
        "model_quality": {"available": True, "threshold": 0.1234, "rows_with_label": 1300, "rows_without_label": 0,
                          "metrics": {"accuracy": 0.83, "precision": 0.2641, "recall": 0.5545, "f1": 0.357,
                                      "roc_auc": 0.7021},
                          "positives": 110, "flagged": 231},
        "notes": ["Per-column verdicts are Evidently's drift tests."],
    }
    _write(paths.reports / "monitoring" / "drift.json", drift)
    _write(paths.metrics / "monitoring.json", {"dataset_drift": False, "drift_share": 1 / 3, "n_drifted_columns": 1,
                                               "n_columns": 3, "department_recall_ratio": min(recalls) / max(recalls)})
    if promotion:
        _write(paths.reports / "promotion.json", {
            "decision": "promoted", "challenger_version": "3", "champion_version": "3", "previous_version": "2",
            "model_name": "idf-readmission-rf",
            "reasons": ["challenger recall 0.555 >= champion recall 0.521 - tolerance 0.01",
                        "department recall parity 0.571 >= 0.5"],
        })


def tiny_warehouse(root: Path, patients: dict[str, int], rates: dict[str, float], rare_patients: int = 3) -> Paths:
    """A hand-made warehouse with only the marts/ref columns the report reads.

    `patients[d]` patients in department d, two index stays each (Jan-Dec 2023), readmitted at
    `rates[d]` (deterministically: the first round(rate * n) stays). Each department's first
    `rare_patients` patients have main diagnosis Z99 (a category under 10 patients when small);
    the others J44 or I50. One hospital per department; cells < 10 patients suppressed in
    agg_department_kpis like the dbt model does.
    """
    import duckdb
    import polars as pl

    paths = Paths(root)
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    stays, readm = [], []
    for dept in sorted(patients):
        n_pat = patients[dept]
        n_stays = 2 * n_pat
        n_readm = round(rates[dept] * n_stays)
        for i in range(n_stays):
            pid = f"P{dept}{i % n_pat:05d}"
            sid = f"{dept}0000001-{i}"
            month = 1 + (i * 7) % 12
            icd = "Z990" if i % n_pat < rare_patients else ("J441" if i % 2 else "I500")
            group = {"Z990": "OTHER", "J441": "COPD", "I500": "HEART_FAILURE"}[icd]
            cost = 1000.0 + 37.0 * i + (5000.0 if group == "COPD" else 0.0)
            admit = f"2023-{month:02d}-03"
            discharge = f"2023-{month:02d}-08"
            stays.append((sid, pid, f"{dept}0000001", cost, admit, discharge, icd))
            readm.append((sid, pid, True, int(i < n_readm), cost, dept, group, discharge))
    con = duckdb.connect(str(paths.warehouse))
    try:
        con.execute("create schema marts; create schema ref")
        stays_frame = pl.DataFrame(stays, orient="row", schema=[
            "stay_id", "patient_id", "hospital_id", "stay_cost", "admission_date", "discharge_date", "icd10_code"])
        readm_frame = pl.DataFrame(readm, orient="row", schema=[
            "stay_id", "patient_id", "is_index", "readmitted_30d", "episode_cost", "department", "diagnosis_group",
            "episode_discharge_date"])
        con.register("stays_frame", stays_frame.to_arrow())
        con.register("readm_frame", readm_frame.to_arrow())
        con.execute("""create table marts.fct_stays as
                       select * replace (admission_date::date as admission_date,
                                         discharge_date::date as discharge_date) from stays_frame""")
        con.execute("""create table marts.fct_readmissions as
                       select * replace (readmitted_30d::integer as readmitted_30d,
                                         episode_discharge_date::date as episode_discharge_date) from readm_frame""")
        # The case-mix columns of the feature mart that the standardised ratios read.
        con.execute("""create table marts.ml_readmission_features as
                       select stay_id, 70 + (hash(stay_id) % 20)::integer as age,
                              1 + (hash(stay_id) % 2)::integer as sex, diagnosis_group,
                              (hash(stay_id) % 4)::integer as charlson_score
                       from marts.fct_readmissions""")
        con.execute("""create table marts.dim_hospitals as
                       select distinct hospital_id, 'Hôpital ' || left(hospital_id, 2) as hospital_name,
                              left(hospital_id, 2) as department, 'CH' as hospital_category, 300 as beds
                       from marts.fct_stays""")
        con.execute("""create table marts.agg_department_kpis as
                       with cells as (
                           select department, date_trunc('month', episode_discharge_date)::date as discharge_month,
                                  count(*) as n, count(distinct patient_id) as p, sum(readmitted_30d) as x
                           from marts.fct_readmissions where is_index group by 1, 2)
                       select department, discharge_month, p < 10 as suppressed,
                              case when p >= 10 then n end as index_stays, case when p >= 10 then p end as patients,
                              case when p >= 10 then x end as readmissions,
                              case when p >= 10 then x / n end as readmission_rate
                       from cells""")
        con.execute("create table ref.ref_departments (department varchar, department_label varchar, "
                    "poverty_rate double)")
        poverty = {"75": 15.4, "77": 11.7, "78": 9.7, "91": 13.2, "92": 11.9, "93": 27.6, "94": 16.6, "95": 17.0}
        con.executemany("insert into ref.ref_departments values (?, ?, ?)",
                        [(d, f"DEPT {d}", poverty[d]) for d in DEPARTMENTS])
        con.execute("create table ref.ref_diagnosis_groups (icd10_category varchar, diagnosis_group varchar, "
                    "icd10_label_fr varchar)")
        con.executemany("insert into ref.ref_diagnosis_groups values (?, ?, ?)", [
            ("J44", "COPD", "Autres maladies pulmonaires obstructives chroniques"),
            ("I50", "HEART_FAILURE", "Insuffisance cardiaque"),
        ])
    finally:
        con.close()
    return paths


def small_project(base: Path) -> Path:
    """A project root with the small warehouse and every optional input, built once per session."""
    if base not in _BUILT:
        root = base / "project"
        paths = build_warehouse(root)
        write_stage_outputs(paths)
        _BUILT[base] = root
    return _BUILT[base]


if __name__ == "__main__":  # time a build: python -m tests.support.report_fixtures /tmp/report-demo
    import sys
    import time

    started = time.perf_counter()
    target = Path(sys.argv[1])
    write_stage_outputs(build_warehouse(target))
    print(f"built {target} in {time.perf_counter() - started:.1f}s")
