"""Find the tables of an extract folder by name pattern (case-insensitive, .csv or .txt)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.contracts import SOURCES, SourceTable
from pipelines.snds.errors import ExtractError

EXTENSIONS: tuple[str, ...] = (".csv", ".txt")


@dataclass(frozen=True)
class SourceFile:
    """One file of an extract and the SNDS table it holds (with its PMSI year if yearly)."""

    source: SourceTable
    path: Path
    year: int | None  # 4-digit PMSI year for yearly tables


def _match(source: SourceTable, stem: str) -> re.Match[str] | None:
    return re.fullmatch(source.pattern, stem, flags=re.IGNORECASE)


def classify(path: Path) -> SourceFile | None:
    """The source table a file holds, or None when its name matches no known table."""
    if path.suffix.lower() not in EXTENSIONS:
        return None
    for source in SOURCES.values():
        found = _match(source, path.stem)
        if found is not None:
            year = 2000 + int(found.group("yy")) if source.yearly else None
            return SourceFile(source, path, year)
    return None


def discover(folder: Path) -> dict[str, list[SourceFile]]:
    """Every known table's files in the folder, sorted by (year, name); unknown files are ignored.

    Two files for the same yearly table and year (e.g. T_MCO21B.csv and t_mco21b.txt) are a
    structural error: stacking both would double the stays.
    """
    if not folder.is_dir():
        raise ExtractError(f"{folder}: extract folder not found")
    found: dict[str, list[SourceFile]] = {name: [] for name in SOURCES}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        file = classify(path)
        if file is not None:
            found[file.source.name].append(file)
    for name, files in found.items():
        files.sort(key=lambda f: (f.year or 0, f.path.name))
        if SOURCES[name].yearly:
            years = [f.year for f in files]
            twice = sorted({y for y in years if years.count(y) > 1 and y is not None})
            if twice:
                names = ", ".join(f.path.name for f in files if f.year == twice[0])
                raise ExtractError(f"{folder}: several files for {name} of {twice[0]}: {names}")
    return found
