"""Clean vs the pandas reference vs the Polars parse floor, on the same raw files.

Usage:
    python benchmarks/bench_clean.py --scales 1 10        # generate each scale into a scratch root
    python benchmarks/bench_clean.py --root /tmp/x10      # an existing root with data/raw + params.yaml

Three programs run one after the other, each in its own process so that its wall time and
peak resident memory (``os.wait4`` rusage of that child alone) are its own:

* floor:  Polars ``read_csv`` of every raw file, all columns as text (the least any clean must do);
* clean:  ``python -m pipelines clean`` (the stage as ``dvc repro`` runs it);
* pandas: ``benchmarks/pandas_clean.py`` (the same rules in idiomatic pandas; a test checks it
  gives the same tables and accounting).

Prints wall seconds, peak MB and CPU seconds for each, clean/floor and pandas/clean (wall and CPU),
and the 1-minute load average before the runs (the machine is shared: read the figures with it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

FLOOR = """
import sys, pathlib, polars as pl
rows = 0
for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    frame = pl.read_csv(path, separator=";", infer_schema=False, quote_char=None, truncate_ragged_lines=True)
    rows += frame.height
print(rows)
"""


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Run a command; (wall seconds, peak RSS MB, CPU seconds user + system) of that process alone.

    CPU seconds are the steadier figure on a shared machine: other jobs stretch wall time, not CPU
    time (Polars uses both cores: its CPU seconds can exceed its wall seconds on an idle machine).
    """
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench-clean: {' '.join(cmd)} failed:\n{err}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # maxrss in KB on Linux


def period(root: Path) -> list[str]:
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    w = params.get("warehouse", {})
    return ["--start", str(w.get("data_start_date", "2021-01-01")), "--end", str(w.get("data_end_date", "2024-12-31"))]


def bench_root(root: Path, repeat: int, only: Sequence[str] = ("floor", "clean", "pandas")) -> dict[str, float]:
    raw = root / "data" / "raw"
    out = Path(tempfile.mkdtemp(prefix="bench-pandas-"))
    programs = {
        "floor": [sys.executable, "-c", FLOOR, str(raw)],
        "clean": [sys.executable, "-m", "pipelines", "--root", str(root), "-q", "clean"],
        "pandas": [sys.executable, str(HERE / "pandas_clean.py"), str(raw), str(out), *period(root)],
    }
    figures: dict[str, float] = {"load_1min": os.getloadavg()[0]}
    try:
        for name, cmd in programs.items():
            if name not in only:
                figures[f"{name}_s"] = figures[f"{name}_mb"] = figures[f"{name}_cpu"] = float("nan")
                continue
            runs = [measure(cmd) for _ in range(repeat)]
            figures[f"{name}_s"] = min(s for s, _, _ in runs)
            figures[f"{name}_mb"] = max(mb for _, mb, _ in runs)
            figures[f"{name}_cpu"] = min(cpu for _, _, cpu in runs)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    figures["raw_mb"] = sum(p.stat().st_size for p in raw.iterdir()) / 1e6
    figures["clean_over_floor"] = figures["clean_s"] / figures["floor_s"]
    figures["pandas_over_clean"] = figures["pandas_s"] / figures["clean_s"]
    figures["cpu_clean_over_floor"] = figures["clean_cpu"] / figures["floor_cpu"]
    figures["cpu_pandas_over_clean"] = figures["pandas_cpu"] / figures["clean_cpu"]
    return figures


def generated_root(params_file: Path, scale: float) -> Path:
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["generate"]["scale"] = scale
    params.setdefault("clean", {})["max_quarantine_share"] = 1.0  # benchmark the work, not the guard
    root = Path(tempfile.mkdtemp(prefix=f"bench-clean-x{scale:g}-"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    measure([sys.executable, "-m", "pipelines", "--root", str(root), "-q", "generate"])
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 10.0])
    parser.add_argument("--root", type=Path, help="an existing project root (data/raw, params.yaml)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each program (best time kept)")
    parser.add_argument("--keep", action="store_true", help="keep generated roots")
    parser.add_argument("--programs", nargs="+", choices=("floor", "clean", "pandas"),
                        default=["floor", "clean", "pandas"], help="run only these (the others print nan)")
    args = parser.parse_args(argv)
    print(f"{'input':>12} {'raw MB':>7} {'load':>5} {'floor s':>8} {'clean s':>8} {'pandas s':>9} "
          f"{'clean/floor':>11} {'pandas/clean':>12} {'floor MB':>9} {'clean MB':>9} {'pandas MB':>9} "
          f"{'floor cpu':>9} {'clean cpu':>9} {'pandas cpu':>10} {'cpu c/f':>7} {'cpu p/c':>7}")
    inputs = [(str(args.root), args.root, False)] if args.root else [
        (f"scale {s:g}", generated_root(args.params, s), not args.keep) for s in args.scales]
    for label, root, remove in inputs:
        try:
            f = bench_root(root, args.repeat, args.programs)
        finally:
            if remove:
                shutil.rmtree(root, ignore_errors=True)
        print(f"{label[-12:]:>12} {f['raw_mb']:>7.1f} {f['load_1min']:>5.1f} {f['floor_s']:>8.2f} "
              f"{f['clean_s']:>8.2f} {f['pandas_s']:>9.2f} {f['clean_over_floor']:>11.2f} "
              f"{f['pandas_over_clean']:>12.2f} {f['floor_mb']:>9.0f} {f['clean_mb']:>9.0f} {f['pandas_mb']:>9.0f} "
              f"{f['floor_cpu']:>9.1f} {f['clean_cpu']:>9.1f} {f['pandas_cpu']:>10.1f} "
              f"{f['cpu_clean_over_floor']:>7.2f} {f['cpu_pandas_over_clean']:>7.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
