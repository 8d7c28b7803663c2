"""The SNDS simulator: SNDS-shaped raw exports, deliberately dirty, plus their ground truth."""

from pipelines.generate.run import run_generate

__all__ = ["run_generate"]
