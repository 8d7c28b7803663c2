"""Department boundaries (IGN Admin Express, shipped in pipelines/assets) and map placement.

Hospitals have no coordinates in the marts, only a department, so each is drawn at a point
inside its department's polygon: candidate points on a grid over the polygon, kept when well
inside (distance to the boundary), then picked by farthest-point sampling from the most
interior point. Pure geometry, no randomness: the same hospitals give the same points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import MissingInputError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GEOJSON_FILE = ASSETS / "idf-departements.geojson"
GEO_ATTRIBUTION = (
    "Department boundaries: IGN, Admin Express COG 2018 (via the france-geojson project), "
    "Licence Ouverte / Open Licence Etalab 2.0"
)
CODE_PROPERTY = "code"
NAME_PROPERTY = "nom"


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    rings: list[np.ndarray]  # outer and inner rings, each (k, 2) lon/lat


def load_geojson(path: Path = GEOJSON_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise MissingInputError(f"{path}: department boundaries not found (pipelines/assets)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("type") != "FeatureCollection":
        raise ValueError(f"{path}: expected a GeoJSON FeatureCollection")
    return data


def departments(geojson: dict[str, Any]) -> dict[str, Department]:
    out: dict[str, Department] = {}
    for feature in geojson["features"]:
        props = feature.get("properties") or {}
        geom = feature["geometry"]
        polygons = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        rings = [np.asarray(ring, dtype=float)[:, :2] for polygon in polygons for ring in polygon]
        code = str(props[CODE_PROPERTY])
        out[code] = Department(code, str(props.get(NAME_PROPERTY, code)), rings)
    return dict(sorted(out.items()))


def _scale(lat: float) -> np.ndarray:
    """lon/lat -> locally isotropic units (degrees of latitude)."""
    return np.array([math.cos(math.radians(lat)), 1.0])


def contains(dept: Department, points: np.ndarray) -> np.ndarray:
    """Even-odd ray casting over every ring: (n, 2) lon/lat points -> (n,) booleans."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    inside = np.zeros(points.shape[0], dtype=bool)
    for ring in dept.rings:
        x1, y1 = ring[:, 0][None, :], ring[:, 1][None, :]
        x2, y2 = np.roll(ring[:, 0], -1)[None, :], np.roll(ring[:, 1], -1)[None, :]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= (np.count_nonzero(crosses & (x < x_at), axis=1) % 2).astype(bool)
    return inside


def boundary_distance(dept: Department, points: np.ndarray) -> np.ndarray:
    """Distance (scaled units) from each point to the nearest boundary segment."""
    scale = _scale(float(np.mean(np.concatenate(dept.rings)[:, 1])))
    p = points * scale
    best = np.full(points.shape[0], np.inf)
    for ring in dept.rings:
        a = ring * scale
        b = np.roll(a, -1, axis=0)
        ab = b - a
        length2 = np.maximum((ab**2).sum(axis=1), 1e-18)
        t = np.clip(((p[:, None, :] - a[None, :, :]) * ab[None, :, :]).sum(axis=2) / length2[None, :], 0, 1)
        nearest = a[None, :, :] + t[:, :, None] * ab[None, :, :]
        best = np.minimum(best, np.sqrt(((p[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1))
    return best


def interior_points(dept: Department, k: int, grid: int = 48, margin: float = 0.4) -> list[tuple[float, float]]:
    """`k` (lon, lat) points well inside the department, the first one its most interior point."""
    if k <= 0:
        return []
    allpts = np.concatenate(dept.rings)
    (lon0, lat0), (lon1, lat1) = allpts.min(axis=0), allpts.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(lon0, lon1, grid), np.linspace(lat0, lat1, grid))
    candidates = np.column_stack([gx.ravel(), gy.ravel()])
    candidates = candidates[contains(dept, candidates)]
    if candidates.shape[0] == 0:  # degenerate polygon: fall back to the vertex mean
        centre = allpts.mean(axis=0)
        return [(float(centre[0]), float(centre[1]))] * k
    depth = boundary_distance(dept, candidates)
    pool = candidates[depth >= margin * depth.max()]
    scale = _scale(float(pool[:, 1].mean()))
    chosen = [int(np.argmax(depth[depth >= margin * depth.max()]))]
    nearest = np.sqrt((((pool - pool[chosen[0]]) * scale) ** 2).sum(axis=1))
    while len(chosen) < min(k, pool.shape[0]):
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, np.sqrt((((pool - pool[nxt]) * scale) ** 2).sum(axis=1)))
    points = [(float(pool[i, 0]), float(pool[i, 1])) for i in chosen]
    while len(points) < k:  # more hospitals than candidate points: reuse, in order
        points.append(points[len(points) % len(chosen)])
    return points


def place(dept: Department, ids: Sequence[str]) -> dict[str, tuple[float, float]]:
    """A point inside `dept` for each id; ids sorted, then given the points in order.

    The first point (the most interior one) is kept for the department's label, so the
    hospitals take the next ones."""
    ordered = sorted(ids)
    points = interior_points(dept, len(ordered) + 1)[1:]
    return {i: (round(lon, 6), round(lat, 6)) for i, (lon, lat) in zip(ordered, points, strict=True)}


def label_point(dept: Department) -> tuple[float, float]:
    lon, lat = interior_points(dept, 1)[0]
    return (round(lon, 6), round(lat, 6))
