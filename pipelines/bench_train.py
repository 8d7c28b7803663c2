"""Benchmark the train stage on a large synthetic feature mart; prints wall time, phases and peak memory.

Usage: python -m pipelines.bench_train [--rows 200000 1000000] [--features PATH] [--keep]

The mart is the project's own feature mart (run `dvc repro features` first) replicated until it
has the requested number of rows: each copy gets new stay ids and a small jitter on stay_cost
(log-normal, sd 0.02) and keeps its discharge dates and labels, so the time structure and the
prevalence of the original window are kept and the table is about `rows` index stays (a
scale-100 region has ~1-1.5 M). Train runs in its own process in a scratch project root with the
current params.yaml (as `dvc repro` would run it), so its peak resident memory is its own.
Tuning cost should be flat in rows (Optuna sees at most train.tune_max_rows), the refit and the
learning curve grow only through the capped bootstrap (train.max_samples_rows) and O(rows) passes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines import contracts

FEATURES_FILE = "ml_readmission_features.parquet"


def replicate(source: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    """`rows` rows made of perturbed copies of `source` (copy 0 is the source itself)."""
    copies = -(-rows // source.height)
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(copies):
        part = source if k == 0 else source.with_columns(
            (pl.col(contracts.FEATURE_KEY) + f"-r{k}"),
            (pl.col("stay_cost") * np.exp(rng.normal(0.0, 0.02, source.height))).round(2),
        )
        parts.append(part)
    return pl.concat(parts).head(rows)


def run_train(root: Path) -> tuple[float, float, dict[str, Any]]:
    """The train stage in a child process: (seconds, peak RSS in MB, printed summary)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines", "--root", str(root), "-q", "train"],
                                stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"bench_train: train failed at {root}:\n{err[-4000:]}")
        out.seek(0)
        summary: dict[str, Any] = json.loads(out.read().decode())
    return seconds, usage.ru_maxrss / 1024, summary


def bench(source: pl.DataFrame, rows: int, params_file: Path, keep: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-train-{rows}-"))
    try:
        (root / "data" / "features").mkdir(parents=True)
        replicate(source, rows, seed=rows).write_parquet(root / "data" / "features" / FEATURES_FILE)
        shutil.copy(params_file, root / "params.yaml")
        seconds, peak_mb, summary = run_train(root)
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "train_rows": summary["rows"]["train"], "tune_rows": summary["tune_rows"],
            "bootstrap": summary["refit_bootstrap_rows"], "seconds": round(seconds, 1), "peak_mb": round(peak_mb),
            **summary["timings"], "trials": summary["n_trials_run"], "valid_roc_auc": summary["valid"]["roc_auc"],
            "valid_recall": summary["valid"]["recall"], "plateau": summary["learning_curve_plateau_rows"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", type=int, default=[200_000, 1_000_000], help="mart sizes to run")
    parser.add_argument("--features", type=Path, default=Path("data/features") / FEATURES_FILE,
                        help="source feature mart (default: this project's)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file for train")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args(argv)
    if not args.features.exists():
        print(f"error: {args.features}: feature mart not found (run `dvc repro features` first)", file=sys.stderr)
        return 2
    source = pl.read_parquet(args.features)
    columns = ("rows", "train_rows", "tune_rows", "bootstrap", "tuning_s", "learning_curve_s", "refit_s",
               "seconds", "peak_mb", "trials", "valid_roc_auc", "valid_recall", "plateau")
    print(" ".join(f"{c:>16}" for c in columns), flush=True)
    for rows in args.rows:
        figures = bench(source, rows, args.params, args.keep)
        print(" ".join(f"{figures[c]!s:>16}" for c in columns), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
