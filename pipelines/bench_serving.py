"""Latency benchmark of the served champion (loopback only, bounded loops).

    python -m pipelines.bench_serving [--root .] [--single 500] [--batches 100] [--batch-rows 100]
                                      [--max-seconds 120]

Starts `mlflow models serve -m models:/<name>@champion` (pipelines.serving.ServedModel) on a free
127.0.0.1 port in its own process group, warms it up, then runs two sequential loops with one
keep-alive client: `--single` one-row requests and `--batches` requests of `--batch-rows` rows,
each loop stopped early when its share of `--max-seconds` is spent. Request bodies are built
beforehand from the feature mart's test-window rows (discharge_date >= train.valid_end), so the
figures are HTTP round trip + parsing + validation + prediction. Prints p50 / p99 / mean latency
(ms) and throughput (rows/s) as JSON, then stops the server's whole process group.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.config import Params, Paths, load_params, section
from pipelines.model import data as fdata
from pipelines.model.params import TrainParams
from pipelines.serving import ScoringClient, champion_version, served_champion, split_payload


def request_bodies(paths: Paths, params: Params, rows_per_request: int, n_requests: int) -> list[str]:
    """JSON bodies of consecutive test-window rows (wrapping around when the window is short)."""
    tp = section(params, "train", TrainParams)
    mart = fdata.load_features(paths)
    rows = mart.filter(pl.col(fdata.DATE) >= tp.valid_end).sort([fdata.DATE, fdata.KEY])
    if rows.height == 0:
        rows = mart.sort([fdata.DATE, fdata.KEY])
    features = rows.select([fdata.KEY, *fdata.FEATURES])
    bodies = []
    for i in range(n_requests):
        start = (i * rows_per_request) % features.height
        idx = [(start + k) % features.height for k in range(rows_per_request)]
        bodies.append(json.dumps(split_payload(features[idx]), allow_nan=False))
    return bodies


def _loop(client: ScoringClient, bodies: list[str], budget_s: float) -> tuple[np.ndarray, float]:
    latencies = []
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        response = client.post(body)
        response.json()
        latencies.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"benchmark request failed: HTTP {response.status_code}: {response.text[:500]}")
        if time.perf_counter() - started > budget_s:
            break
    return np.array(latencies) * 1000.0, time.perf_counter() - started


def _stats(latencies_ms: np.ndarray, elapsed_s: float, rows_per_request: int) -> dict[str, Any]:
    return {
        "requests": int(latencies_ms.size),
        "rows_per_request": rows_per_request,
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 2),
        "mean_ms": round(float(latencies_ms.mean()), 2),
        "max_ms": round(float(latencies_ms.max()), 2),
        "requests_per_s": round(latencies_ms.size / elapsed_s, 1),
        "rows_per_s": round(latencies_ms.size * rows_per_request / elapsed_s, 1),
        "elapsed_s": round(elapsed_s, 2),
    }


def run_bench(paths: Paths, params: Params, single: int = 500, batches: int = 100, batch_rows: int = 100,
              warmup: int = 20, max_seconds: float = 120.0) -> dict[str, Any]:
    version = champion_version(paths, params)
    single_bodies = request_bodies(paths, params, 1, single)
    batch_bodies = request_bodies(paths, params, batch_rows, batches)
    started = time.perf_counter()
    with served_champion(paths, params) as server:
        startup_s = time.perf_counter() - started
        client = ScoringClient(server.url)
        try:
            for body in single_bodies[:warmup] + batch_bodies[: max(1, warmup // 4)]:
                client.post(body).raise_for_status()
            single_ms, single_s = _loop(client, single_bodies, max_seconds / 2)
            batch_ms, batch_s = _loop(client, batch_bodies, max_seconds / 2)
        finally:
            client.close()
    return {
        "model": f"{section(params, 'train', TrainParams).model_name} version {version} (champion)",
        "server": "mlflow models serve --env-manager local (1 worker), 127.0.0.1",
        "server_startup_s": round(startup_s, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "single_row": _stats(single_ms, single_s, 1),
        f"batch_{batch_rows}_rows": _stats(batch_ms, batch_s, batch_rows),
        "target_single_row_p99_ms": 50,
        "target_met": bool(np.percentile(single_ms, 99) < 50),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench_serving", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: current folder)")
    parser.add_argument("--single", type=int, default=500, help="one-row requests (default 500)")
    parser.add_argument("--batches", type=int, default=100, help="multi-row requests (default 100)")
    parser.add_argument("--batch-rows", type=int, default=100, help="rows per multi-row request (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests, not measured (default 20)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap of both loops (default 120)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    result = run_bench(Paths(root), load_params(root / "params.yaml"), args.single, args.batches, args.batch_rows,
                       args.warmup, args.max_seconds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
