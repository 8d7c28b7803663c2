"""The one metrics-JSON writer: exact bytes, per-file options, and the committed files it wrote."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines import metrics_io

ROOT = Path(__file__).resolve().parents[2]

PAYLOAD: dict[str, Any] = {
    "b": 0.1234567891,
    "a": {"z": [1, 2.5, -0.0], "é": "Île-de-France"},
    "n": None,
    "t": True,
    "i": 3,
}


def test_default_bytes_escape_non_ascii_and_keep_floats() -> None:
    # train, evaluate, promote, warehouse and clean write with these defaults
    expected = ('{\n  "a": {\n    "z": [\n      1,\n      2.5,\n      -0.0\n    ],\n'
                '    "\\u00e9": "\\u00cele-de-France"\n  },\n  "b": 0.1234567891,\n  "i": 3,\n'
                '  "n": null,\n  "t": true\n}\n')
    assert metrics_io.json_text(PAYLOAD) == expected
    assert metrics_io.json_text({**PAYLOAD, "x": math.nan}).endswith('  "t": true,\n  "x": NaN\n}\n')


def test_monitor_bytes_round_nan_to_null_and_keep_non_ascii() -> None:
    payload = {**PAYLOAD, "x": math.nan, "inf": math.inf, "np": np.float64(0.12345678), "ni": np.int64(4),
               "tup": (1, 2), "day": date(2024, 3, 1), "tiny": -1e-9}
    text = metrics_io.json_text(metrics_io.json_ready(payload, metrics_io.DIGITS), ensure_ascii=False,
                                allow_nan=False)
    expected = ('{\n  "a": {\n    "z": [\n      1,\n      2.5,\n      0.0\n    ],\n    "é": "Île-de-France"\n  },\n'
                '  "b": 0.123457,\n  "day": "2024-03-01",\n  "i": 3,\n  "inf": null,\n  "n": null,\n  "ni": 4,\n'
                '  "np": 0.123457,\n  "t": true,\n  "tiny": 0.0,\n  "tup": [\n    1,\n    2\n  ],\n  "x": null\n}\n')
    assert text == expected
    with pytest.raises(ValueError, match="Out of range float"):
        metrics_io.json_text({"x": math.nan}, allow_nan=False)


def test_write_json_is_atomic_and_utf8(tmp_path: Path) -> None:
    target = tmp_path / "out" / "m.json"
    metrics_io.write_json(target, {"é": 1}, ensure_ascii=False)
    assert target.read_bytes() == b'{\n  "\xc3\xa9": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.json"]


def test_rounding() -> None:
    assert metrics_io.rounded(np.float64(2 / 3), 6) == 0.666667
    assert type(metrics_io.rounded(np.float32(0.5), 6)) is float
    assert metrics_io.rounded(1, 4) == 1.0
    assert metrics_io.rounded_or_none(math.nan, 4) is None
    assert metrics_io.rounded_or_none(None, 4) is None
    assert metrics_io.rounded_or_none(0.123456, 3) == 0.123


# The committed metrics files were written by the writers this module replaced: parsing one and
# writing it again with its stage's options gives back the committed bytes.
COMMITTED = {
    "reports/metrics/cleaning.json": {},
    "reports/metrics/evaluate.json": {},
    "reports/metrics/train.json": {},
    "reports/metrics/warehouse.json": {},
    "reports/promotion.json": {},
    "reports/metrics/monitoring.json": {"ensure_ascii": False, "allow_nan": False},
}


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_committed_metrics_files_round_trip(name: str) -> None:
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} not in this checkout")
    text = path.read_text(encoding="utf-8")
    assert metrics_io.json_text(json.loads(text), **COMMITTED[name]) == text
