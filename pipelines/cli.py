"""One entry point for every stage: `python -m pipelines <stage>` or `idf-pipeline <stage>`.

Each stage reads params.yaml, does its I/O under the project root and prints a short JSON
summary. Stage modules are imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines import atomic, interrupts
from pipelines.config import Params, Paths, load_params
from pipelines.errors import PipelineInputError

# stage name -> (module, function, one-line help)
STAGES: dict[str, tuple[str, str, str]] = {
    "generate": ("pipelines.generate", "run_generate",
                 "simulate SNDS-shaped raw exports (data/raw) and their ground truth (data/truth)"),
    "clean": ("pipelines.clean", "run_clean",
              "type, repair and validate raw exports with Polars (data/clean, data/quarantine)"),
    "warehouse": ("pipelines.warehouse", "run_warehouse",
                  "dbt build: staging, episodes, readmissions, marts and data tests (data/warehouse.duckdb)"),
    "features": ("pipelines.features", "run_features",
                 "export the ML feature mart to data/features/ml_readmission_features.parquet"),
    "train": ("pipelines.train", "run_train",
              "Optuna-tune a Random Forest for recall at a precision floor; log to MLflow; register"),
    "evaluate": ("pipelines.evaluate", "run_evaluate",
                 "score the untouched test window against LACE, logistic regression and the oracle"),
    "monitor": ("pipelines.monitor", "run_monitor",
                "Evidently drift and per-department fairness on the monitored window (reports/monitoring)"),
    "report": ("pipelines.report", "run_report",
               "write reports/dashboard.html: the Regional Patient Flow Command Center (offline Plotly page)"),
    "promote": ("pipelines.promote", "run_promote",
                "gate the new version against alias 'champion' (test objective, LACE, fairness); move "
                "champion/previous; reports/promotion.json"),
    "rollback": ("pipelines.promote", "rollback",
                 "make 'previous' the champion again (the rolled-back version becomes 'previous')"),
    "serve": ("pipelines.serving", "run_serve",
              "serve models:/<name>@champion over REST (MLflow protocol, uvicorn workers; --host, --port)"),
    "score": ("pipelines.serving", "run_score",
              "batch-score a Parquet file of discharges with the champion (--input, --output, --reasons K)"),
    "publish": ("pipelines.cloud.publish", "run_publish",
                "load data/clean into BigQuery (Parquet via GCS; PUBLISH_VIA=csv for emulators); see docs/cloud.md"),
}

def _run_stage(name: str, paths: Paths, params: Params, quiet: bool, args: argparse.Namespace) -> dict[str, Any]:
    module_name, func_name, _ = STAGES[name]
    func: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module_name), func_name)
    if name == "serve":  # runs the server until interrupted
        return func(paths, params, host=args.host, port=args.port)
    if name == "score":
        return func(paths, params, args.input.resolve(), args.output.resolve(), reasons=args.reasons)
    if name == "publish":
        return func(paths, params, via=args.via)
    if name == "generate":
        return func(paths, params, progress=not quiet)
    if name == "clean":
        for output in importlib.import_module(module_name).output_files(paths):
            atomic.sweep_stale(output)  # clean stages its files inside data/clean: a killed run's would stay
        return _clean_summary(func(paths, params.clean, progress=not quiet))
    return func(paths, params)


def _clean_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The totals line of cleaning.json; the per-table detail stays in the file."""
    totals = metrics.get("totals", {})
    return {k: totals[k] for k in ("raw_rows", "clean_rows", "quarantined_rows", "duplicates_dropped", "cascade_rows")
            if k in totals}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idf-pipeline",
        description=(
            "Île-de-France 30-day readmission pipeline on simulated SNDS data. "
            "Every stage is also a DVC stage: `dvc repro` runs them in order and skips what is up to date."
        ),
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="project root holding params.yaml, data/, reports/ (default: current folder)")
    parser.add_argument("--params", type=Path, default=None,
                        help="params file (default: <root>/params.yaml)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (_, _, help_text) in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        # The global options are accepted after the stage too (`generate -q`, `train --root DIR`);
        # SUPPRESS keeps the value given before the stage when the option is not repeated after it.
        stage.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
        stage.add_argument("--root", type=Path, default=argparse.SUPPRESS, help="project root (as before the stage)")
        stage.add_argument("--params", type=Path, default=argparse.SUPPRESS, help="params file (as before the stage)")
        if name == "serve":
            stage.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
            stage.add_argument("--port", type=int, default=5001, help="port (default 5001)")
        elif name == "publish":
            stage.add_argument("--via", choices=("parquet", "csv"), default=None,
                               help="Parquet staged in GCS_BUCKET, or a CSV upload (no bucket: small data, "
                                    "emulators); default $PUBLISH_VIA, else parquet")
        elif name == "score":
            stage.add_argument("--input", type=Path, required=True, help="Parquet file of discharges (feature rows)")
            stage.add_argument("--output", type=Path, required=True,
                               help="Parquet file to write: stay_id, probability, high_risk")
            stage.add_argument("--reasons", type=int, default=0, choices=range(0, 11), metavar="K",
                               help="also write each row's K main reasons (reason_i: the feature, "
                                    "reason_i_contribution: its share of the forest score; 0-10, default 0)")
    return parser


class _ProgressLines(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``show_progress_lines`` adds (its class tells it is already there)."""


def show_progress_lines() -> None:
    """The stages' INFO lines (trials, folds, splits) on stderr, timed: a long train is not silent.

    Only the ``pipelines`` loggers, once per process; libraries keep their own levels. ``-q`` drops
    the progress bars, not these lines (``dvc repro`` shows them as each stage runs).
    """
    logger = logging.getLogger("pipelines")
    if any(isinstance(h, _ProgressLines) for h in logger.handlers):
        return
    handler = _ProgressLines(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_progress_lines()
    with interrupts.handling():
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    root: Path = args.root.resolve()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    started = time.perf_counter()
    try:
        params = load_params(args.params or root / "params.yaml")
        summary = _run_stage(args.stage, Paths(root), params, args.quiet, args)
    except KeyboardInterrupt as exc:  # Ctrl-C / SIGINT (130) or SIGTERM (143): temporary outputs already removed
        name, code = interrupts.exit_code(exc)
        print(f"interrupted ({name}): {args.stage} stopped, previous outputs kept", file=sys.stderr)
        return code
    except Exception as exc:  # user errors get one clear line; bugs keep their traceback
        if isinstance(exc, PipelineInputError):  # the user's to fix: one line, no traceback
            print(f"error: {args.stage}: {exc}", file=sys.stderr)
            return 2
        raise
    summary = {"stage": args.stage, "seconds": round(time.perf_counter() - started, 1), **summary}
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
