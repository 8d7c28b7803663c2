"""Per-group classification metrics of the monitored window, with small-cell suppression.

Each group's metrics are computed on that group's rows only (Evidently's GroupBy(Recall(), ...)
returns the overall recall for every group in 0.7.23, so it is not used); the tests check every
figure against scikit-learn on the same slices.

A group whose patient count (stays when the frame has no patient id) is under
`min_cell_patients` is published with every count and metric null and `suppressed: true`, and
it takes no part in the parity ratios (SNDS small-cell rule). Inside a published group, any
count of 1-9 people (positives, flagged, true positives) is nulled with the rates it would
reveal (`mask_small_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl

from pipelines.config.monitor import AGE_BAND

UNKNOWN = "unknown"
SEX_LABELS = {1: "male", 2: "female"}  # contracts: 1 male, 2 female
PARITY_METRICS = ("recall", "selection_rate", "precision")
METRICS = ("recall", "precision", "false_negative_rate", "selection_rate", "brier", "prevalence",
           "mean_predicted", "observed_to_expected")
COUNTS = ("n", "patients", "positives", "flagged", "true_positives")
FOUR_FIFTHS_NOTE = (
    "Heuristic screening rule (the 'four-fifths' or 80% rule of thumb): a min/max ratio across groups "
    "below the threshold flags a disparity worth a closer look. It is not a legal test of discrimination "
    "and passing it does not show that the model is fair."
)


def age_band_labels(edges: Sequence[int]) -> list[str]:
    """Band names for ages cut at `edges` (left-closed): '<18', '18-44', ..., '80+'."""
    labels = [f"<{edges[0]}"]
    labels += [f"{a}-{b - 1}" for a, b in pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    return labels


def age_bands(age: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """The band of each age (float array, NaN = unknown)."""
    labels = np.array(age_band_labels(edges), dtype=object)
    out = np.full(age.shape, UNKNOWN, dtype=object)
    known = ~np.isnan(age)
    out[known] = labels[np.searchsorted(np.asarray(edges, dtype=float), age[known], side="right")]
    return out


def group_keys(frame: pl.DataFrame, group: str, edges: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """(key of each row, the groups in display order) for one grouping."""
    if group == AGE_BAND:
        keys = age_bands(frame["age"].cast(pl.Float64).fill_null(np.nan).to_numpy(), edges)
        order = age_band_labels(edges)
    elif group == "sex":
        codes = frame["sex"].cast(pl.Int64).to_list()
        keys = np.array([SEX_LABELS.get(c, UNKNOWN) if c is not None else UNKNOWN for c in codes], dtype=object)
        order = list(SEX_LABELS.values())
    else:
        values = frame[group]
        if values.dtype.is_float():
            values = values.cast(pl.Int64, strict=False) if (values.drop_nulls() % 1 == 0).all() else values
        keys = np.array([UNKNOWN if v is None else str(v) for v in values.to_list()], dtype=object)
        order = sorted({k for k in keys.tolist() if k != UNKNOWN})
    present = set(keys.tolist())
    order = [g for g in order if g in present] + ([UNKNOWN] if UNKNOWN in present else [])
    return keys, order


def _ratio(num: int, den: int) -> float | None:
    return num / den if den > 0 else None


def group_metrics(y: np.ndarray, flag: np.ndarray, probability: np.ndarray, patients: int) -> dict[str, Any]:
    """Counts and metrics of one group (unsuppressed). Undefined rates (0 denominator) are None."""
    y = np.asarray(y, dtype=np.int64)
    flag = np.asarray(flag, dtype=np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    n, positives, flagged = int(y.size), int(y.sum()), int(flag.sum())
    tp = int(((y == 1) & (flag == 1)).sum())
    recall = _ratio(tp, positives)
    return {
        "n": n,
        "patients": int(patients),
        "positives": positives,
        "flagged": flagged,
        "true_positives": tp,
        "recall": recall,
        "precision": _ratio(tp, flagged),
        "false_negative_rate": None if recall is None else 1.0 - recall,
        "selection_rate": _ratio(flagged, n),
        "brier": float(np.mean((probability - y) ** 2)) if n else None,
        "prevalence": _ratio(positives, n),
        # calibration in the large: the mean served probability against the observed rate
        "mean_predicted": float(probability.mean()) if n else None,
        "observed_to_expected": positives / float(probability.sum()) if n and probability.sum() > 0 else None,
        "suppressed": False,
    }


def suppressed_row() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTS), **dict.fromkeys(METRICS), "suppressed": True, "small_counts_masked": False}


def fairness_by(
    keys: np.ndarray,
    order: Sequence[str],
    y: np.ndarray,
    flag: np.ndarray,
    probability: np.ndarray,
    patient_ids: np.ndarray | None,
    min_cell: int,
) -> list[dict[str, Any]]:
    """One row per group, in `order`; groups under `min_cell` patients are suppressed."""
    rows = []
    for group in order:
        mask = keys == group
        patients = int(np.unique(patient_ids[mask]).size) if patient_ids is not None else int(mask.sum())
        row = suppressed_row() if patients < min_cell else group_metrics(y[mask], flag[mask], probability[mask],
                                                                         patients)
        rows.append({"group": group, **mask_small_counts(row, min_cell)})
    return rows


# Metrics that would reveal a masked count (numerator or denominator).
_REVEALS: dict[str, tuple[str, ...]] = {
    "positives": ("recall", "false_negative_rate", "prevalence", "observed_to_expected"),
    "flagged": ("precision", "selection_rate"),
    "true_positives": ("recall", "false_negative_rate", "precision"),
}


def mask_small_counts(row: dict[str, Any], min_cell: int) -> dict[str, Any]:
    """Inside a published group, null every count of 1 to min_cell-1 people and the rates built on it.

    The SNDS small-cell rule covers every published count, not only the group size: 3
    readmitted patients in an age band are a cell of 3.
    """
    out = dict(row)
    masked = False
    for count, metrics in _REVEALS.items():
        value = row.get(count)
        if value is not None and 0 < value < min_cell:
            out[count] = None
            for metric in metrics:
                out[metric] = None
            masked = True
    out["small_counts_masked"] = masked
    return out


def reliability_bins(y: np.ndarray, probability: np.ndarray, patient_ids: np.ndarray | None, bins: int,
                     min_cell: int) -> list[dict[str, Any]]:
    """Quantile bins of the served probability: mean predicted vs observed rate (a reliability curve).

    A bin under `min_cell` patients, or with 1 to min_cell-1 readmitted stays, publishes no rate."""
    order = np.argsort(probability, kind="stable")
    out = []
    for part in np.array_split(order, bins):
        if part.size == 0:
            continue
        patients = int(np.unique(patient_ids[part]).size) if patient_ids is not None else int(part.size)
        positives = int(y[part].sum())
        hidden = patients < min_cell or 0 < positives < min_cell
        out.append({"n": None if patients < min_cell else int(part.size),
                    "mean_predicted": None if patients < min_cell else float(probability[part].mean()),
                    "observed_rate": None if hidden else positives / part.size, "suppressed": hidden})
    return out


def reliability_by(keys: np.ndarray, order: Sequence[str], y: np.ndarray, probability: np.ndarray,
                   patient_ids: np.ndarray | None, bins: int, min_cell: int) -> list[dict[str, Any]]:
    """Per group (in `order`), its reliability bins; a group under `min_cell` patients gets none."""
    rows = []
    for group in order:
        mask = keys == group
        patients = int(np.unique(patient_ids[mask]).size) if patient_ids is not None else int(mask.sum())
        ids = patient_ids[mask] if patient_ids is not None else None
        rows.append({"group": group, "suppressed": patients < min_cell,
                     "bins": [] if patients < min_cell else reliability_bins(y[mask], probability[mask], ids, bins,
                                                                             min_cell)})
    return rows


def parity(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = PARITY_METRICS) -> dict[str, dict[str, Any]]:
    """min/max ratio across unsuppressed groups with a defined value (None with < 2 such groups)."""
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        values = [(r["group"], r[metric]) for r in rows if not r["suppressed"] and r[metric] is not None]
        entry: dict[str, Any] = {"ratio": None, "min": None, "max": None, "min_group": None, "max_group": None,
                                 "n_groups": len(values)}
        if values:
            low = min(values, key=lambda gv: gv[1])  # first group in display order on ties
            high = max(values, key=lambda gv: gv[1])
            entry.update(min=low[1], max=high[1], min_group=low[0], max_group=high[0])
            if len(values) >= 2 and high[1] > 0:
                entry["ratio"] = low[1] / high[1]
        out[metric] = entry
    return out


NORMAL_MIN_CLUSTERS = 5_000  # patients in a group from which its bootstrap totals are drawn from the normal limit


def parity_intervals(keys: np.ndarray, groups: Sequence[str], y: np.ndarray, flag: np.ndarray,
                     patient_ids: np.ndarray | None, replicates: int, seed: int,
                     metrics: Sequence[str] = PARITY_METRICS, chunk: int = 50) -> dict[str, list[float] | None]:
    """95% percentile-bootstrap interval of each min/max parity ratio across `groups` (the groups the
    point ratio uses). Patients (stays without ids) are resampled with replacement within each group,
    so a group keeps its size and a patient's stays move together. None with < 2 groups.

    A group of at least NORMAL_MIN_CLUSTERS patients draws its resampled totals (true positives,
    positives, flagged, stays) from their normal limit, mean m * mean and covariance m * cov of the
    per-patient totals: what resampling m patients converges to, at a cost that does not grow with m."""
    if len(groups) < 2 or replicates < 1:
        return dict.fromkeys(metrics)
    rng = np.random.default_rng(seed)
    per_group = []
    for group in groups:
        mask = keys == group
        cluster = np.unique(patient_ids[mask], return_inverse=True)[1] if patient_ids is not None \
            else np.arange(int(mask.sum()))
        yg, fg = y[mask], flag[mask]
        sums = np.stack([np.bincount(cluster, weights=w) for w in (yg * fg, yg, fg, np.ones_like(yg))], axis=1)
        per_group.append(sums)  # per cluster: true positives, positives, flagged, stays
    draws = np.empty((replicates, len(groups), 4))
    exact = [g for g, sums in enumerate(per_group) if sums.shape[0] < NORMAL_MIN_CLUSTERS]
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        for g in exact:
            sums = per_group[g]
            pick = rng.integers(0, sums.shape[0], (size, sums.shape[0]))
            draws[start:start + size, g] = sums[pick].sum(axis=1)
    for g, sums in enumerate(per_group):
        if g not in exact:  # the resampled totals of many clusters are normal (CLT): O(replicates), not O(n)
            m = sums.shape[0]
            draws[:, g] = rng.multivariate_normal(sums.mean(axis=0) * m, np.cov(sums, rowvar=False) * m,
                                                  size=replicates)
    tp, pos, flagged, n = (draws[..., i] for i in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {"recall": tp / pos, "precision": tp / flagged, "selection_rate": flagged / n}
    out: dict[str, list[float] | None] = {}
    for metric in metrics:
        v = values[metric]
        high = v.max(axis=1)
        ratio = np.where(high > 0, v.min(axis=1) / high, np.nan)
        ratio = ratio[np.isfinite(ratio)]  # a draw with an undefined group value gives no ratio
        out[metric] = [float(q) for q in np.quantile(ratio, [0.025, 0.975])] if ratio.size else None
    return out


def _intervals(rows: Sequence[dict[str, Any]], keys: np.ndarray, y: np.ndarray, flags: np.ndarray,
               ids: np.ndarray | None, replicates: int, seed: int) -> dict[str, list[float] | None]:
    """Per parity metric, its bootstrap interval over the groups that metric's point ratio uses."""
    out = {}
    by_groups: dict[tuple[str, ...], dict[str, list[float] | None]] = {}  # one bootstrap per group set
    for metric in PARITY_METRICS:
        used = tuple(r["group"] for r in rows if not r["suppressed"] and r[metric] is not None)
        if used not in by_groups:
            by_groups[used] = parity_intervals(keys, used, y, flags, ids, replicates, seed)
        out[metric] = by_groups[used][metric]
    return out


def four_fifths(parities: dict[str, dict[str, dict[str, Any]]], threshold: float) -> dict[str, Any]:
    """Screening of every parity ratio against `threshold` (clearly labelled a heuristic)."""
    checks: dict[str, dict[str, Any]] = {}
    below: list[str] = []
    for group, by_metric in parities.items():
        checks[group] = {}
        for metric, entry in by_metric.items():
            ratio = entry["ratio"]
            passes = None if ratio is None else bool(ratio >= threshold)
            checks[group][metric] = {"ratio": ratio, "passes": passes}
            if passes is False:
                below.append(f"{group}.{metric}")
    return {
        "kind": "heuristic screening rule, not a legal test",
        "note": FOUR_FIFTHS_NOTE,
        "threshold": threshold,
        "checks": checks,
        "below_threshold": below,
        "any_below_threshold": bool(below),
    }


def fairness_report(
    frame: pl.DataFrame,
    groups: Sequence[str],
    edges: Sequence[int],
    min_cell: int,
    four_fifths_threshold: float,
    label: str,
    probability: str = "probability",
    flag: str = "high_risk",
    patient_id: str | None = None,
    reliability_groups: Sequence[str] = (),
    n_bins: int = 5,
    replicates: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-group metrics, parity ratios and the four-fifths screening for each grouping; for the
    `reliability_groups`, each group's reliability curve in `n_bins` quantile bins."""
    labelled = frame.filter(pl.col(label).is_not_null())
    y = labelled[label].cast(pl.Int64).to_numpy()
    flags = labelled[flag].cast(pl.Int64).to_numpy()
    p = labelled[probability].cast(pl.Float64).to_numpy()
    ids = labelled[patient_id].to_numpy() if patient_id and patient_id in labelled.columns else None
    by_group: dict[str, Any] = {}
    parities: dict[str, dict[str, dict[str, Any]]] = {}
    for group in groups:
        keys, order = group_keys(labelled, group, edges)
        rows = fairness_by(keys, order, y, flags, p, ids, min_cell)
        parities[group] = parity(rows)
        if replicates:
            for metric, ci in _intervals(rows, keys, y, flags, ids, replicates, seed).items():
                parities[group][metric]["ci95"] = ci
        by_group[group] = {
            "groups": rows,
            "parity": parities[group],
            "n_suppressed": sum(1 for r in rows if r["suppressed"]),
        }
        if group in reliability_groups:
            by_group[group]["reliability"] = reliability_by(keys, order, y, p, ids, n_bins, min_cell)
    total_patients = int(np.unique(ids).size) if ids is not None else int(y.size)
    overall = suppressed_row() if total_patients < min_cell else group_metrics(y, flags, p, total_patients)
    return {
        "groups": by_group,
        "four_fifths": four_fifths(parities, four_fifths_threshold),
        "min_cell_patients": min_cell,
        "patients_counted_from": "patient_id" if ids is not None else "stays (no patient id in the frame)",
        "rows": int(labelled.height),
        "rows_without_label": int(frame.height - labelled.height),
        "overall": overall,
        "metric_definitions": {
            "recall": "true positives / positives (readmitted stays)",
            "precision": "true positives / flagged stays",
            "false_negative_rate": "1 - recall",
            "selection_rate": "flagged stays / stays",
            "brier": "mean of (probability - label)^2",
            "prevalence": "positives / stays",
            "mean_predicted": "mean served (calibrated) probability: compare with prevalence",
            "observed_to_expected": "positives / sum of probabilities (1 = calibrated in the large)",
            "reliability": "quantile bins of the probability within the group: mean predicted vs observed rate",
            "parity ratio": "min / max across unsuppressed groups with a defined value",
            "ci95": "95% percentile bootstrap of the parity ratio (patients, else stays, resampled within groups)",
        },
    }
