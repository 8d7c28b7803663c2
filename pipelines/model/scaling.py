"""Keeping the cost of training and scoring bounded when the number of index stays grows.

- `bootstrap_rows` / `capped_forest_params`: each tree of the forest draws at most a fixed number
  of rows (RandomForestClassifier's `max_samples` as a count), so a fit costs about the same on
  1 M rows as on 200 k. sklearn draws the bootstrap as per-row weights and its splitter skips the
  rows of weight 0, so the work per tree follows the count, not the table.
- `time_stratified_sample`: the rows Optuna tunes on, a bounded, seeded sample of the training
  window, stratified on (calendar month, label) so every month and the label's share are kept and
  the time-ordered CV folds still see the whole period.
- `learning_curve_sizes`: log-spaced training sizes for the learning curve.
- `predict_positive` / `predict_frame_chunked`: scoring in slices of rows, so the one-hot matrix
  and the forest's per-row buffers never hold the whole table at once. Per row the arithmetic is
  the same as one call on everything (a test checks chunked == unchunked).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # at run time pyfunc_model (and mlflow) load only when predicting
    from pipelines.model.pyfunc_model import ModelBundle

# Rows per prediction slice: ~65 k rows x ~60 one-hot columns x 8 bytes ~ 30 MB per slice.
PREDICT_CHUNK_ROWS = 65_536


def bootstrap_rows(fraction: float, n_rows: int, cap: int) -> int:
    """Rows each tree draws: int(`fraction` x n_rows) as sklearn (1.9) computes it for a float, capped.

    Below the cap the count equals sklearn's own for the fraction, so the trees are the same as
    with the float (class_weight='balanced' weights sum to n_rows)."""
    if n_rows < 1:
        raise ValueError("bootstrap_rows: no training rows")
    if not 0 < fraction <= 1:
        raise ValueError(f"bootstrap_rows: fraction must be in (0, 1], got {fraction}")
    if cap < 1:
        raise ValueError(f"bootstrap_rows: cap must be >= 1, got {cap}")
    return max(1, min(int(fraction * n_rows), cap, n_rows))


def capped_forest_params(hp: dict[str, Any], n_rows: int, cap: int) -> dict[str, Any]:
    """The forest's params with `max_samples` (a fraction in the search space) as a capped row count."""
    out = dict(hp)
    out["max_samples"] = bootstrap_rows(float(hp.get("max_samples", 1.0)), n_rows, cap)
    return out


def _quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas proportional to `sizes` summing to `total` (largest remainders, ties by order)."""
    exact = sizes * (total / sizes.sum())
    quotas = np.floor(exact).astype(np.int64)
    short = total - int(quotas.sum())
    if short:
        order = np.argsort(-(exact - quotas), kind="stable")
        quotas[order[:short]] += 1
    capped: np.ndarray = np.minimum(quotas, sizes)
    return capped


def time_stratified_sample(dates: np.ndarray, y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Sorted row indices of at most `max_rows` rows, stratified on (calendar month, label).

    Every stratum keeps its share of rows (largest-remainder rounding), so the sample has the
    window's prevalence and spreads over all its months; rows are drawn without replacement by a
    generator seeded with `seed`, stratum by stratum in (month, label) order: the same input and
    seed give the same indices. Indices come back sorted, so rows sorted by date stay sorted.
    All rows (0..n-1) when there are no more than `max_rows`.
    """
    n = int(y.size)
    if dates.shape[0] != n:
        raise ValueError(f"time_stratified_sample: {dates.shape[0]} dates for {n} labels")
    if max_rows < 1:
        raise ValueError(f"time_stratified_sample: max_rows must be >= 1, got {max_rows}")
    if n <= max_rows:
        return np.arange(n)
    months = dates.astype("datetime64[M]").astype(np.int64)
    labels = np.asarray(y).astype(np.int64)
    keys, inverse, sizes = np.unique(np.stack([months, labels], axis=1), axis=0, return_inverse=True,
                                     return_counts=True)
    inverse = inverse.reshape(-1)
    quotas = _quotas(sizes.astype(np.float64), max_rows)
    rng = np.random.default_rng(seed)
    order = np.argsort(inverse, kind="stable")  # rows grouped by stratum, in row order inside each
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    picked = [rng.choice(order[bounds[s]:bounds[s + 1]], size=int(quotas[s]), replace=False)
              for s in range(keys.shape[0]) if quotas[s] > 0]
    return np.sort(np.concatenate(picked))


def learning_curve_sizes(n_max: int, points: int, min_rows: int) -> list[int]:
    """`points` training sizes log-spaced from min(min_rows, n_max) to n_max (distinct, ascending)."""
    if n_max < 1 or points < 1:
        raise ValueError("learning_curve_sizes: n_max and points must be >= 1")
    low = max(1, min(min_rows, n_max))
    if points == 1 or low == n_max:
        return [n_max]
    sizes = np.geomspace(low, n_max, num=points)
    return sorted({int(np.rint(s)) for s in sizes[:-1]} | {n_max})


def predict_positive(model: Any, x: pd.DataFrame, chunk_rows: int = PREDICT_CHUNK_ROWS, threads: int = 1
                     ) -> np.ndarray:
    """P(class 1) of a fitted sklearn classifier, computed `chunk_rows` rows at a time.

    `threads` > 1 scores slices of rows side by side; give it a model whose forest has n_jobs=1.
    Same bits for any thread count: sklearn's own parallel predict adds the trees' votes in the
    order the threads finish, which moves the last bit and so the fitted calibration."""
    def score(part: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(part)[:, 1], dtype=np.float64)

    if threads <= 1 or len(x) < 2 * threads:
        return _chunked(score, x, chunk_rows)
    rows = min(chunk_rows, -(-len(x) // threads))
    parts = [x.iloc[i:i + rows] for i in range(0, len(x), rows)]
    with ThreadPoolExecutor(max_workers=threads) as pool:  # tree traversal releases the GIL
        return np.concatenate(list(pool.map(score, parts)))


def predict_frame_chunked(bundle: ModelBundle, frame: pd.DataFrame,
                          chunk_rows: int = PREDICT_CHUNK_ROWS, threads: int = 1) -> pd.DataFrame:
    """pyfunc_model.predict_frame (probability, high_risk) in slices of `chunk_rows` rows.

    `threads` > 1 scores the slices side by side: the same bits as one thread, as long as the
    bundle's forest keeps n_jobs=1 (as train saves it; see `predict_positive`)."""
    from pipelines.model.pyfunc_model import predict_frame

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if len(frame) < 2 or (threads <= 1 and len(frame) <= chunk_rows):
        return predict_frame(bundle, frame)
    rows = max(1, min(chunk_rows, -(-len(frame) // max(threads, 1))))
    slices = [frame.iloc[i:i + rows] for i in range(0, len(frame), rows)]
    if threads <= 1 or len(slices) < 2:
        return pd.concat([predict_frame(bundle, part) for part in slices])
    with ThreadPoolExecutor(max_workers=threads) as pool:  # tree traversal releases the GIL
        return pd.concat(list(pool.map(lambda part: predict_frame(bundle, part), slices)))


def _chunked(fn: Callable[[pd.DataFrame], np.ndarray], x: pd.DataFrame, chunk_rows: int) -> np.ndarray:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if len(x) <= chunk_rows:
        return fn(x)
    return np.concatenate([fn(x.iloc[i:i + chunk_rows]) for i in range(0, len(x), chunk_rows)])


def plateau_rows(sizes: list[int], scores: list[float], tolerance: float) -> int | None:
    """The smallest size whose score is within `tolerance` of the best: where more rows stop helping."""
    valid = [(s, v) for s, v in zip(sizes, scores, strict=True) if not math.isnan(v)]
    if not valid:
        return None
    best = max(v for _, v in valid)
    return min(s for s, v in valid if v >= best - tolerance)
