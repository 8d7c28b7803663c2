"""`generate` stage: simulate the region chunk by chunk and write data/raw + data/truth."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from pipelines import interrupts
from pipelines.config import Params, Paths
from pipelines.contracts import (
    RAW_SEPARATOR,
    SOURCES,
    TRUTH_CORRUPTION_COLUMNS,
    TRUTH_CORRUPTIONS_FILE,
    TRUTH_STAY_COLUMNS,
    TRUTH_STAYS_FILE,
)
from pipelines.generate import extract
from pipelines.generate.dirt import corrupt
from pipelines.generate.episodes import simulate_unplanned
from pipelines.generate.population import make_hospitals, make_patients
from pipelines.generate.sessions import simulate_dispensings, simulate_sessions

# Independent random streams, so that changing one part leaves the others' draws alone.
_STREAM_HOSPITALS, _STREAM_PATIENTS, _STREAM_STAYS, _STREAM_SESSIONS = 1, 2, 3, 4
_STREAM_PHARMACY, _STREAM_EXTRACT, _STREAM_DIRT, _STREAM_PMSI = 5, 6, 7, 8


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _append_csv(frame: pl.DataFrame, path: Path) -> None:
    """Append rows to a raw file, with the header line when the file is new."""
    header = not path.exists()
    with path.open("ab") as handle:
        frame.write_csv(handle, separator=RAW_SEPARATOR, quote_style="never", include_header=header,
                        line_terminator="\n")


def run_generate(paths: Paths, params: Params, progress: bool = True) -> dict[str, Any]:
    """Write the raw SNDS files and the truth; return row counts per file."""
    gen = params.generate
    seed = params.seed
    start = np.datetime64(gen.start_date.isoformat(), "D")
    n_days = int((np.datetime64(gen.end_date.isoformat(), "D") - start).astype(int))
    raw_tmp, truth_tmp = paths.raw.with_name("raw.partial"), paths.truth.with_name("truth.partial")
    for folder in (raw_tmp, truth_tmp):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    hosp = make_hospitals(gen.hospitals, _rng(seed, _STREAM_HOSPITALS), new_clinic_in_93=gen.drift.enabled)
    counts: dict[str, int] = {}
    corruptions: list[dict[str, str]] = []
    truths: list[pl.DataFrame] = []

    def write(table: str, frame: pl.DataFrame) -> None:
        for file_name, rows in extract.split_sources(table, frame).items():
            _append_csv(rows, raw_tmp / file_name)
            counts[file_name] = counts.get(file_name, 0) + rows.height

    hospitals, log = corrupt("hospitals", extract.hospitals_table(hosp), gen.dirt, _rng(seed, _STREAM_DIRT, 0))
    write("hospitals", hospitals)
    write_referential = extract.drug_referential()
    _append_csv(write_referential, raw_tmp / SOURCES["IR_PHA_R"].file_name())
    counts[SOURCES["IR_PHA_R"].file_name()] = write_referential.height
    corruptions += log
    rsa_next: dict[tuple[str, str], int] = {}

    n_total = gen.n_patients
    starts = list(range(0, n_total, gen.chunk_patients))
    bar = tqdm(total=n_total, desc="generate", unit="patients", disable=not progress)
    for chunk, first in enumerate(starts):
        n = min(gen.chunk_patients, n_total - first)
        pat = make_patients(n, first, seed, gen.start_date.year, _rng(seed, _STREAM_PATIENTS, chunk), gen.latent)
        unplanned, death_day, _ = simulate_unplanned(
            pat, hosp, gen.effects, _rng(seed, _STREAM_STAYS, chunk), start, n_days, gen.drift,
            gen.latent, gen.returns,
        )
        sessions = simulate_sessions(pat, hosp, unplanned, death_day, _rng(seed, _STREAM_SESSIONS, chunk), n_days)
        pharmacy = simulate_dispensings(pat, death_day, _rng(seed, _STREAM_PHARMACY, chunk), n_days)
        stays, diagnoses, truth = extract.stays_tables(
            pat, hosp, unplanned, sessions, rsa_next, start, _rng(seed, _STREAM_EXTRACT, chunk)
        )
        tables = {
            "patients": extract.patients_table(pat, death_day, start),
            "stays": stays,
            "diagnoses": diagnoses,
            "dispensings": extract.dispensings_table(pat, pharmacy, chunk, start),
        }
        for k, (name, frame) in enumerate(tables.items(), start=1):
            dirty, log = corrupt(name, frame, gen.dirt, _rng(seed, _STREAM_DIRT, chunk + 1, k))
            if name == "stays":  # stays the standard PMSI filters drop in staging (not in the truth)
                dirty = pl.concat([dirty, extract.pmsi_rejected_stays(
                    stays, gen.dirt.pmsi_rejected_stay, rsa_next, _rng(seed, _STREAM_PMSI, chunk))])
            write(name, dirty)
            corruptions += log
        truths.append(truth)
        bar.update(n)
    bar.close()

    truth_all = pl.concat(truths).select(
        [pl.col(c).cast(t) for c, t in TRUTH_STAY_COLUMNS.items()]
    )
    truth_all.write_parquet(truth_tmp / TRUTH_STAYS_FILE, compression="zstd", statistics=True)
    corruption_frame = pl.DataFrame(
        corruptions, schema=dict.fromkeys(TRUTH_CORRUPTION_COLUMNS, pl.String)
    ) if corruptions else pl.DataFrame(schema=TRUTH_CORRUPTION_COLUMNS)
    corruption_frame.write_parquet(truth_tmp / TRUTH_CORRUPTIONS_FILE, compression="zstd")

    interrupts.checkpoint()
    for final, tmp in ((paths.raw, raw_tmp), (paths.truth, truth_tmp)):
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return {
        "rows": dict(sorted(counts.items())),
        "total_rows": sum(counts.values()),
        "corruptions": corruption_frame.group_by("kind").len().sort("kind").rows(),
    }
