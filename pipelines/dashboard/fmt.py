"""Formatting of the published numbers, and the tagged spans the tests read back.

Every insight number on the page is a `Metric`: shown as text, and carried exactly in
`data-value` (repr of the float, so the browser test can compare it with the marts).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field


def suppressed_text(min_cell: int) -> str:
    return f"&lt;{min_cell} pts"


MASKED_TEXT = "masked"  # a readmission figure resting on 1-9 readmitted patients


@dataclass(frozen=True)
class Metric:
    key: str
    value: float | int | str | None
    text: str
    extra: dict[str, str] = field(default_factory=dict)

    def html(self, css: str = "metric") -> str:
        return tag_span(self.key, self.value, self.text, css, self.extra)


def data_value(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def tag_span(key: str, value: float | int | str | None, text: str, css: str = "metric",
             extra: dict[str, str] | None = None) -> str:
    attrs = "".join(f' data-{html.escape(k)}="{html.escape(v)}"' for k, v in sorted((extra or {}).items()))
    return (f'<span class="{css}" data-metric="{html.escape(key)}" data-value="{html.escape(data_value(value))}"'
            f"{attrs}>{html.escape(text)}</span>")


def esc(text: object) -> str:
    return html.escape(str(text))


def pct(value: float | None, digits: int = 1, missing: str = "n/a") -> str:
    if value is None or math.isnan(value):
        return missing
    return f"{100 * value:.{digits}f}%"


def signed_pct(value: float | None, digits: int = 1) -> str:
    """A relative difference: +13.3% / −4.0% (true minus sign)."""
    if value is None or math.isnan(value):
        return "n/a"
    text = f"{100 * value:+.{digits}f}%"
    return text.replace("-", "−")


def integer(value: int | None, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:,}"


def euros(value: float | None) -> str:
    """1234567 -> '€1.23M'; 12345 -> '€12.3k'; 950 -> '€950'."""
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 1e9:
        return f"€{value / 1e9:.2f}bn"
    if abs(value) >= 1e6:
        return f"€{value / 1e6:.1f}M"
    if abs(value) >= 1e4:
        return f"€{value / 1e3:.1f}k"
    return f"€{value:,.0f}"


def number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"
