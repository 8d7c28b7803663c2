"""Latency and throughput benchmark of the served champion (loopback only, bounded loops).

    python -m pipelines.bench_serving [--root .] [--single 500] [--batches 100] [--batch-rows 100]
                                      [--clients 8] [--concurrent 1600] [--max-seconds 120]

Starts `python -m pipelines serve` (pipelines.serving.ServedModel: models:/<name>@champion,
`serving.workers` uvicorn workers) on a free 127.0.0.1 port in its own process group, warms it
up, then runs three loops: `--single` one-row requests and `--batches` requests of
`--batch-rows` rows with one keep-alive client, then `--concurrent` one-row requests shared by
`--clients` threads, each with its own keep-alive connection (http.client: a light client, so
the figures are the server's, not the client's). Each loop stops early when its share of
`--max-seconds` is spent. Request bodies are built beforehand from the feature mart's
test-window rows (discharge_date >= train.valid_end), so the figures are HTTP round trip +
parsing + validation + prediction. Prints p50 / p99 / mean latency (ms) and throughput as JSON,
then stops the server's whole process group.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.config import Params, Paths, load_params
from pipelines.model import data as fdata
from pipelines.serving import ScoringClient, champion_version, served_champion, split_payload


def request_bodies(paths: Paths, params: Params, rows_per_request: int, n_requests: int) -> list[str]:
    """JSON bodies of consecutive test-window rows (wrapping around when the window is short)."""
    tp = params.train
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


def _client_loop(host: str, port: int, bodies: list[bytes], next_index: Any, deadline: float,
                 start: threading.Barrier, latencies: list[float], errors: list[str]) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Content-Type": "application/json"}
    start.wait()
    try:
        while time.perf_counter() < deadline:
            i = next(next_index)  # itertools.count: atomic under the GIL
            if i >= len(bodies):
                break
            t0 = time.perf_counter()
            connection.request("POST", "/invocations", bodies[i], headers)
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - t0)
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
    finally:
        connection.close()


def _concurrent(url: str, bodies: list[str], clients: int, budget_s: float) -> tuple[np.ndarray, float, list[str]]:
    """`clients` threads share the bodies; latency per request, wall time of the whole run."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    encoded = [b.encode() for b in bodies]
    counter = itertools.count()
    start = threading.Barrier(clients + 1)
    per_client: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    deadline = time.perf_counter() + budget_s
    threads = [threading.Thread(target=_client_loop, args=(host, int(port), encoded, counter, deadline, start,
                                                           per_client[k], errors), daemon=True)
               for k in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return np.array([x for lat in per_client for x in lat]) * 1000.0, elapsed, errors


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
              warmup: int = 20, max_seconds: float = 120.0, clients: int = 8, concurrent: int = 1600
              ) -> dict[str, Any]:
    version = champion_version(paths, params)
    single_bodies = request_bodies(paths, params, 1, single)
    batch_bodies = request_bodies(paths, params, batch_rows, batches)
    concurrent_bodies = request_bodies(paths, params, 1, concurrent)
    started = time.perf_counter()
    with served_champion(paths, params) as server:
        startup_s = time.perf_counter() - started
        client = ScoringClient(server.url)
        try:
            for body in single_bodies[:warmup] + batch_bodies[: max(1, warmup // 4)]:
                client.post(body).raise_for_status()
            single_ms, single_s = _loop(client, single_bodies, max_seconds / 3)
            batch_ms, batch_s = _loop(client, batch_bodies, max_seconds / 3)
        finally:
            client.close()
        conc_ms, conc_s, errors = _concurrent(server.url, concurrent_bodies, clients, max_seconds / 3)
    if errors:
        raise RuntimeError(f"benchmark: {len(errors)} concurrent request(s) failed, first: {errors[0]}")
    concurrent_stats = {"clients": clients, **_stats(conc_ms, conc_s, 1)}
    return {
        "model": f"{params.train.model_name} version {version} (champion)",
        "server": f"python -m pipelines serve ({params.serving.workers} uvicorn worker(s)), 127.0.0.1",
        "server_startup_s": round(startup_s, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "single_row": _stats(single_ms, single_s, 1),
        f"batch_{batch_rows}_rows": _stats(batch_ms, batch_s, batch_rows),
        f"single_row_{clients}_clients": concurrent_stats,
        "targets": {"concurrent_p99_ms_below": 50, "concurrent_requests_per_s_at_least": 200},
        "targets_met": bool(concurrent_stats["p99_ms"] < 50 and concurrent_stats["requests_per_s"] >= 200),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench_serving", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: current folder)")
    parser.add_argument("--single", type=int, default=500, help="one-row requests (default 500)")
    parser.add_argument("--batches", type=int, default=100, help="multi-row requests (default 100)")
    parser.add_argument("--batch-rows", type=int, default=100, help="rows per multi-row request (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests, not measured (default 20)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--concurrent", type=int, default=1600,
                        help="one-row requests shared by the concurrent clients (default 1600)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap of the three loops (default 120)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    result = run_bench(Paths(root), load_params(root / "params.yaml"), args.single, args.batches, args.batch_rows,
                       args.warmup, args.max_seconds, args.clients, args.concurrent)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
