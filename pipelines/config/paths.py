"""Every location the stages read or write, relative to the project root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every location the stages read or write, relative to the project root."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def truth(self) -> Path:
        return self.data / "truth"

    @property
    def clean(self) -> Path:
        return self.data / "clean"

    @property
    def quarantine(self) -> Path:
        return self.data / "quarantine"

    @property
    def features(self) -> Path:
        return self.data / "features"

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def registry_stamp(self) -> Path:
        """train's DVC output inside mlruns/: deleting the store deletes it, so train is out of date."""
        return self.mlruns / "lineage.json"

    @property
    def dbt(self) -> Path:
        return self.root / "dbt"
