"""Benchmark generate + clean at several scales; prints wall time and peak memory per stage.

Usage: python -m pipelines.bench [--scales 1 10] [--keep]

Each stage runs in its own process (as `dvc repro` would run it) in a scratch project root,
so its peak resident memory is measured alone. Targets (issue 2): default scale generate +
clean under 60 s; 10x under 10 minutes with peak memory under 4 GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

STAGES = ("generate", "clean")


def run_stage(root: Path, stage: str) -> tuple[float, float]:
    """Run one stage in a child process; return (seconds, peak RSS in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "--root", str(root), "-q", stage],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench: stage {stage} failed at {root}:\n{err}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


def bench_scale(params_file: Path, scale: float, keep: bool) -> dict[str, float]:
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["generate"]["scale"] = scale
    root = Path(tempfile.mkdtemp(prefix=f"bench-x{scale:g}-"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    figures: dict[str, float] = {}
    try:
        for stage in STAGES:
            seconds, peak_mb = run_stage(root, stage)
            figures[f"{stage}_s"] = round(seconds, 1)
            figures[f"{stage}_peak_mb"] = round(peak_mb)
        raw_bytes = sum(p.stat().st_size for p in (root / "data" / "raw").iterdir())
        raw_rows = sum(sum(1 for _ in p.open("rb")) - 1 for p in (root / "data" / "raw").iterdir())
        figures["raw_rows"] = raw_rows
        figures["raw_mb"] = round(raw_bytes / 1e6, 1)
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    figures["total_s"] = round(figures.get("generate_s", 0) + figures.get("clean_s", 0), 1)
    figures["peak_mb"] = max(figures.get("generate_peak_mb", 0), figures.get("clean_peak_mb", 0))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 10.0], help="scales to run (default 1 10)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="base params file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args(argv)
    print(f"{'scale':>6} {'raw rows':>10} {'raw MB':>7} {'generate s':>11} {'clean s':>8} "
          f"{'total s':>8} {'peak MB':>8}")
    for scale in args.scales:
        f = bench_scale(args.params, scale, args.keep)
        print(f"{scale:>6g} {f['raw_rows']:>10,.0f} {f['raw_mb']:>7} {f['generate_s']:>11} {f['clean_s']:>8} "
              f"{f['total_s']:>8} {f['peak_mb']:>8,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
