"""HTML and PNG files of figures.

HTML that works offline: plotly.js (~4.5 MB) is embedded, never fetched from a CDN. To keep the
size down, figures saved one per file use include_plotlyjs="directory" (one plotly.min.js next
to them, shared), and a single self-contained page embeds plotly.js once for all its figures.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go

log = logging.getLogger(__name__)


def div_id(name: str) -> str:
    """A fixed, valid HTML id for a figure (plotly's default is a random uuid: new bytes on every run)."""
    return "fig-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def write_figures(figures: Mapping[str, go.Figure], folder: Path, png: Sequence[str] = ()) -> list[Path]:
    """<name>.html per figure (sharing one plotly.min.js in `folder`), PNGs for the names in `png`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        path = folder / f"{name}.html"
        fig.write_html(path, include_plotlyjs="directory", full_html=True, div_id=div_id(name))
        written.append(path)
    for name in png:
        path = folder / f"{name}.png"
        try:
            figures[name].write_image(path, scale=1)
        except Exception as exc:  # kaleido missing or broken: the HTML is the deliverable
            log.warning("PNG export of %s failed: %s", name, exc)
            continue
        written.append(path)
    return written


def combined_html(figures: Mapping[str, go.Figure], title: str) -> str:
    """One self-contained page with every figure; plotly.js embedded once."""
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=div_id(name))
             for i, (name, fig) in enumerate(figures.items())]
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title>"
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(parts)}</body></html>\n"
