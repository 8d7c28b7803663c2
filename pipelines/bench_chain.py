"""Benchmark the whole chain generate -> clean -> warehouse -> features -> train at several scales.

Usage: python -m pipelines.bench_chain [--scales 1 10 [100]] [--stages generate ... promote]
       [--pandas-max-scale 10] [--params params.yaml] [--keep]
       (or `make bench-chain SCALES="1 10"`; `make bench-region` runs scale 100 generate -> promote)

Each scale runs in a scratch copy of the project (params.yaml with generate.scale set, dbt/)
under a temporary folder; each stage runs in its own child process, as `dvc repro` runs it,
and its wall time and peak resident memory (ru_maxrss of the child and its reaped children,
from os.wait4) are printed. Also printed: the raw rows written by generate, the clean-vs-parse-
floor ratio (clean's wall time over a Polars read of every raw CSV as text, the floor any
cleaner pays) and the clean-vs-pandas ratio when benchmarks/pandas_clean.py exists ("n/a"
otherwise). The machine's load average before and after each scale is printed: on a shared
machine figures are only comparable at similar load. Whole-issue targets: scale 100 under
45 min generate -> promote, every stage under 12 GB peak RSS.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Every stage of dvc.yaml up to promote, in dvc.yaml's order; the default is the chain.
ALL_STAGES: tuple[str, ...] = ("generate", "clean", "warehouse", "features", "train", "evaluate", "monitor",
                               "promote", "report")
CHAIN: tuple[str, ...] = ALL_STAGES[:5]
PANDAS_REFERENCE = Path("benchmarks") / "pandas_clean.py"
NA = "n/a"

# The parse floor: every raw CSV read as text by Polars (no typing, no quoting), in a child process.
# The separator is each file's own (SNDS exports use ';'), read from its header line.
_PARSE_FLOOR = """
import sys, pathlib, polars as pl
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.csv")):
    with p.open("rb") as fh:
        head = fh.readline()
    sep = ";" if head.count(b";") > head.count(b",") else ","
    pl.read_csv(p, infer_schema=False, quote_char=None, separator=sep,
                truncate_ragged_lines=True, encoding="utf8-lossy")
"""


class BenchError(RuntimeError):
    """A stage of the benchmarked chain failed."""


@dataclass
class Run:
    """One child process: wall seconds, peak RSS (MB) and its stdout."""

    seconds: float
    peak_mb: float
    stdout: str
    cpu_s: float = 0.0  # user + system CPU seconds of the child and its reaped children


@dataclass
class ScaleResult:
    scale: float
    stages: dict[str, Run] = field(default_factory=dict)
    raw_rows: int | None = None
    clean_raw_rows: int | None = None
    parse_floor_s: float | None = None
    pandas_s: float | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def total_s(self) -> float:
        return sum(r.seconds for r in self.stages.values())

    @property
    def peak_mb(self) -> float:
        return max((r.peak_mb for r in self.stages.values()), default=0.0)

    def ratio(self, reference_s: float | None) -> str:
        clean = self.stages.get("clean")
        if clean is None or not reference_s:
            return NA
        return f"{clean.seconds / reference_s:.2f}"


def run_child(cmd: list[str], cwd: Path, label: str) -> Run:
    """Run `cmd` in its own process; wall time and ru_maxrss (KB on Linux) of that child and the
    children it reaped. Output goes to files (a full pipe would block the child), and os.wait4
    reaps the child so that its resource usage is ours to read."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=_child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        raise BenchError(f"bench: {label} failed (exit {code}) in {cwd}: {tail}")
    return Run(seconds=seconds, peak_mb=usage.ru_maxrss / 1024, stdout=stdout, cpu_s=usage.ru_utime + usage.ru_stime)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # the venv's dbt/mlflow entry points
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DBT_SEND_ANONYMOUS_USAGE_STATS="False", DVC_NO_ANALYTICS="1")
    return env


def last_json(text: str) -> dict[str, Any]:
    """The stage's JSON summary: the last top-level {...} block of its stdout ({} if none)."""
    start = text.rfind("\n{")
    start = 0 if start < 0 and text.startswith("{") else start + 1
    try:
        parsed = json.loads(text[start:]) if start >= 0 and text[start:].strip() else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def make_project(base: Path, params_file: Path, scale: float) -> Path:
    """A scratch project root: params.yaml with generate.scale = scale, and a copy of dbt/."""
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["generate"]["scale"] = scale
    root = Path(tempfile.mkdtemp(prefix=f"bench-chain-x{scale:g}-"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    shutil.copytree(base / "dbt", root / "dbt", ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return root


def stage_cmd(root: Path, stage: str) -> list[str]:
    return [sys.executable, "-m", "pipelines", "--root", str(root), "-q", stage]


def parse_floor(root: Path) -> float:
    cmd = [sys.executable, "-c", _PARSE_FLOOR, str(root / "data" / "raw")]
    return run_child(cmd, root, "parse floor").seconds


def pandas_reference(base: Path, root: Path) -> float | None:
    """Wall time of the pandas reference cleaner on the raw folder, if benchmarks/ has one."""
    script = base / PANDAS_REFERENCE
    if not script.is_file():
        return None
    out = root / "data" / "pandas_clean"  # the reference writes its own tables (scratch project)
    return run_child([sys.executable, str(script), str(root / "data" / "raw"), str(out)], root,
                     "pandas reference").seconds


def bench_scale(base: Path, params_file: Path, scale: float, stages: tuple[str, ...], keep: bool,
                pandas_max_scale: float = 10.0) -> ScaleResult:
    result = ScaleResult(scale=scale, load_before=os.getloadavg())
    root = make_project(base, params_file, scale)
    try:
        for stage in stages:
            result.stages[stage] = run = run_child(stage_cmd(root, stage), root, f"stage {stage} (scale {scale:g})")
            summary = last_json(run.stdout)
            if stage == "generate":
                result.raw_rows = _int(summary.get("total_rows"))
                result.parse_floor_s = parse_floor(root)
                # pandas takes ~10x clean's time: above pandas_max_scale it is left out (n/a)
                result.pandas_s = pandas_reference(base, root) if scale <= pandas_max_scale else None
            elif stage == "clean":
                result.clean_raw_rows = _int(summary.get("raw_rows"))
            print(f"  x{scale:g} {stage:<9} {run.seconds:8.1f} s {run.peak_mb:9,.0f} MB {run.cpu_s:8.1f} CPU s"
                  f"  load {_load(os.getloadavg())}", flush=True)
            if stage == "warehouse":
                slow = ", ".join(f"{name} {sec:.1f} s" for name, sec in slowest_models(root))
                print(f"           slowest dbt models: {slow or NA}", flush=True)
    finally:
        result.load_after = os.getloadavg()
        if keep:
            print(f"  kept {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def slowest_models(root: Path, n: int = 4) -> list[tuple[str, float]]:
    """The `n` slowest dbt models of the last build (dbt/target/run_results.json), slowest first."""
    try:
        results = json.loads((root / "dbt" / "target" / "run_results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    models = [
        (str(r["unique_id"]).split(".")[-1], float(r.get("execution_time") or 0.0))
        for r in results.get("results", [])
        if str(r.get("unique_id", "")).startswith("model.")
    ]
    return sorted(models, key=lambda m: -m[1])[:n]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def table(results: list[ScaleResult], stages: tuple[str, ...]) -> str:
    """The figures as one fixed-width table: a row per scale, wall s / peak MB per stage."""
    head = f"{'scale':>5} {'raw rows':>11} " + " ".join(f"{s + ' s/MB':>16}" for s in stages)
    head += f" {'total s':>8} {'peak MB':>8} {'clean/floor':>11} {'clean/pandas':>12}  load 1/5/15 before -> after"
    lines = [head]
    for r in results:
        cells = " ".join(
            f"{f'{r.stages[s].seconds:.1f}/{r.stages[s].peak_mb:,.0f}' if s in r.stages else NA:>16}" for s in stages
        )
        raw = f"{r.raw_rows:,}" if r.raw_rows is not None else NA
        lines.append(
            f"{r.scale:>5g} {raw:>11} {cells} {r.total_s:>8.1f} {r.peak_mb:>8,.0f} "
            f"{r.ratio(r.parse_floor_s):>11} {r.ratio(r.pandas_s):>12}  {_load(r.load_before)} -> {_load(r.load_after)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", action="store_true", help="no effect (the whole chain is the default)")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 10.0],
                        help="scales to run (default 1 10; add 100 on request: expect the best part of an hour)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="base params file")
    parser.add_argument("--stages", nargs="+", choices=ALL_STAGES, default=list(CHAIN),
                        help="a prefix of the pipeline to run (default generate -> train; up to report)")
    parser.add_argument("--pandas-max-scale", type=float, default=10.0,
                        help="run the pandas reference cleaner only at scales up to this (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects")
    args = parser.parse_args(argv)
    stages = tuple(s for s in ALL_STAGES if s in args.stages)
    if stages != ALL_STAGES[: len(stages)]:
        parser.error(f"--stages must be a prefix of the pipeline {' -> '.join(ALL_STAGES)}")
    base = Path.cwd()
    if not (base / "dbt" / "dbt_project.yml").is_file() or not args.params.is_file():
        parser.error(f"run from the project root ({base} has no dbt/dbt_project.yml or {args.params})")
    print(f"chain benchmark on {os.cpu_count()} CPU(s), {_mem_total_gb()} GB RAM; stages: {' -> '.join(stages)}",
          flush=True)
    results = []
    try:
        for scale in args.scales:
            results.append(bench_scale(base, args.params, scale, stages, args.keep, args.pandas_max_scale))
    except BenchError as exc:
        print(table(results, stages) if results else "", file=sys.stderr)
        print(exc, file=sys.stderr)
        return 1
    print(table(results, stages))
    return 0


def _mem_total_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f}"
    except OSError:
        pass
    return NA


if __name__ == "__main__":
    sys.exit(main())
