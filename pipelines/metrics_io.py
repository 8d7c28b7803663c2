"""Rounding and writing of the metrics files: one place, so the same inputs give the same bytes.

Every metrics JSON is pretty-printed with sorted keys, an indent of 2 and a final newline, and
written atomically. Options that differ between files today (non-ASCII kept or escaped, NaN
allowed or refused) are explicit arguments, so each file keeps its bytes.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

from pipelines import atomic

DIGITS = 6  # the metrics files of train, evaluate, monitor and promote round here


def rounded(value: float, digits: int) -> float:
    """`value` as a Python float rounded to `digits` decimals (numpy scalars included)."""
    return round(float(value), digits)


def rounded_or_none(value: float | None, digits: int) -> float | None:
    """Like `rounded`, with None for a missing or NaN value (JSON null)."""
    return None if value is None or math.isnan(value) else rounded(value, digits)


def json_ready(value: Any, digits: int) -> Any:
    """Rounded floats, NaN/inf -> None, -0.0 -> 0.0, tuples -> lists, numpy scalars -> Python, dates -> ISO."""
    if isinstance(value, dict):
        return {str(k): json_ready(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v, digits) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return json_ready(value.item(), digits)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        r = rounded(value, digits)
        return 0.0 if r == 0 else r
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def json_text(payload: Any, *, ensure_ascii: bool = True, allow_nan: bool = True) -> str:
    """The text of a metrics file: sorted keys, indent 2, final newline."""
    return json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=ensure_ascii, allow_nan=allow_nan) + "\n"


def write_json(target: Path, payload: Any, *, ensure_ascii: bool = True, allow_nan: bool = True) -> None:
    """`json_text(payload)` written atomically to `target` (UTF-8)."""
    atomic.write_text(target, json_text(payload, ensure_ascii=ensure_ascii, allow_nan=allow_nan))
