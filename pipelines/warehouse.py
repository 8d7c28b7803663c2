"""Warehouse stage: `dbt build` of the dbt project (DuckDB by default) over the clean Parquet.

dbt runs in-process through `dbt.cli.main.dbtRunner` with the project's `dbt/` folder as
project and profiles dir and target `local`. Every location is passed as an absolute path
(the clean folder as var `clean_dir`, the DuckDB file through SNDS_DUCKDB_PATH), so the stage
behaves the same from any working directory; the dbt defaults (data/clean, data/warehouse.duckdb)
are relative to the project root for people running dbt by hand from there.

The readmission definition lives in dbt (models/marts/fct_readmissions.sql); this module only
passes its params as dbt vars, turns failing nodes into a `WarehouseError`, and reads a few
summary figures back from the marts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines import atomic, contracts, interrupts, marts, metrics_io
from pipelines.config import DuckDBSettings, Params, Paths, WarehouseParams
from pipelines.duckdb_settings import connect_read_only
from pipelines.errors import PipelineInputError
from pipelines.guards import check_clean_stays
from pipelines.metrics_io import rounded_or_none
from pipelines.standardised import ClusteredFigures, clustered_figures
from pipelines.stats import ratio_independent, ratio_to_total, wilson_interval

CLEAN_TABLES: tuple[str, ...] = ("patients", "hospitals", "stays", "diagnoses", "dispensings")
MARTS_SCHEMA = "marts"
DBT_TARGET = "local"


class WarehouseError(PipelineInputError, RuntimeError):
    """dbt build failed: a model errored or an error-severity test (data or unit) failed."""

    def __init__(self, message: str, failures: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []



@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the dbt invocation only."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def dbt_args(command: str, paths: Paths, wp: WarehouseParams, *extra: str) -> list[str]:
    """The dbt CLI arguments of a command run against this project's `local` target."""
    dbt_vars = {"clean_dir": str(paths.clean.resolve()), **wp.dbt_vars()}
    return [
        command,
        "--project-dir", str(paths.dbt.resolve()),
        "--profiles-dir", str(paths.dbt.resolve()),
        "--target", DBT_TARGET,
        "--vars", json.dumps(dbt_vars, sort_keys=True),
        *extra,
    ]


def invoke_dbt(
    args: list[str], paths: Paths, database: Path | None = None, settings: DuckDBSettings | None = None
) -> Any:
    """Run one dbt command in-process against `database` (default paths.warehouse) under the DuckDB
    `settings` (memory limit, threads, spill directory; default DuckDBSettings()); returns dbt's
    RunExecutionResult. An interrupt inside dbt is raised again as KeyboardInterrupt."""
    from dbt.cli.main import dbtRunner  # heavy import, only when the stage runs

    target = (database or paths.warehouse).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    resources = settings or DuckDBSettings()
    resources.temp_path(paths.root).mkdir(parents=True, exist_ok=True)
    with _environ(
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        SNDS_DUCKDB_PATH=str(target),
        SNDS_DBT_TARGET=DBT_TARGET,
        **resources.environ(paths.root),
    ):
        res = dbtRunner().invoke(args)
    _release_duckdb()
    if isinstance(res.exception, KeyboardInterrupt):  # Ctrl-C / SIGTERM inside dbt: the caller cleans up
        raise res.exception
    if res.exception is not None:
        detail = str(res.exception).strip() or type(res.exception).__name__
        raise WarehouseError(f"dbt {args[0]} did not run: {detail}") from res.exception
    failures = failing_nodes(res.result)
    if failures or not res.success:
        raise WarehouseError(failure_message(args[0], failures, res.result, target), failures)
    return res.result


def _status(r: Any) -> str:
    return str(getattr(r.status, "value", r.status))


def failing_nodes(result: Any) -> list[dict[str, str]]:
    """Models that errored and error-severity tests (data or unit) that failed or errored."""
    out: list[dict[str, str]] = []
    for r in getattr(result, "results", None) or []:
        status = _status(r)
        if status in ("error", "fail", "runtime error"):
            lines = [line.strip() for line in (r.message or "").strip().splitlines() if line.strip()]
            out.append({
                "node": r.node.unique_id,
                "name": str(getattr(r.node, "name", r.node.unique_id)),
                "kind": str(getattr(r.node, "resource_type", "node")).split(".")[-1].lower(),
                "status": status,
                "message": " - ".join(lines[:2])[:MESSAGE_CHARS],
                "failures": str(getattr(r, "failures", None) or ""),
                "sql": str(getattr(r.node, "compiled_code", None) or ""),
                "column": str(getattr(r.node, "column_name", None) or ""),
            })
    return out


MESSAGE_CHARS = 200  # one failing node's dbt message, cut
SAMPLE_ROWS = 3  # failing rows shown per failing data test
SAMPLE_COLUMNS = 4
VALUE_CHARS = 30
MAX_NODES_LISTED = 5


def failing_rows(database: Path, sql: str) -> list[dict[str, Any]]:
    """The first failing rows of a data test: its compiled SQL re-run on the (temporary) database."""
    import duckdb

    if not sql.strip() or not database.is_file():
        return []
    try:
        con = duckdb.connect(str(database), read_only=True)
    except duckdb.Error:
        return []
    try:
        cursor = con.execute(f"select * from ({sql}) as failing limit {SAMPLE_ROWS}")
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except duckdb.Error:  # e.g. the test's model itself failed to build
        return []
    finally:
        con.close()


def _row_text(row: dict[str, Any], column: str = "") -> str:
    """`col=value, ...`: the tested column first, then the row's first columns (its key)."""
    keys = ([column] if column in row else []) + [k for k in row if k != column]
    parts = [f"{k}={str(row[k])[:VALUE_CHARS]}" for k in keys[:SAMPLE_COLUMNS]]
    more = len(row) - SAMPLE_COLUMNS
    return ", ".join(parts) + (f", +{more} column(s)" if more > 0 else "")


def failure_message(command: str, failures: list[dict[str, str]], result: Any, database: Path) -> str:
    """First line: what failed and that the previous warehouse is kept; then one line per failing node."""
    statuses = [_status(r) for r in getattr(result, "results", None) or []]
    kinds: dict[str, int] = {}
    for f in failures:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    counted = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in sorted(kinds.items()))
    counted = counted or "no failing node reported"
    skipped = statuses.count("skipped")
    head = (f"dbt {command} failed ({counted}{f', {skipped} skipped' if skipped else ''}); "
            f"previous {database.name.split('.tmp-')[0]} kept")
    lines = [head]
    for f in failures[:MAX_NODES_LISTED]:
        line = f"  {f['status'].upper()} {f['kind']} {f['name']}"
        if f["kind"] == "test" and f["failures"]:
            line += f" ({f['failures']} failing row(s))"
            rows = failing_rows(database, f["sql"])
            if rows:
                line += ": " + "; ".join(_row_text(r, f["column"]) for r in rows)
            else:
                line += f": {f['message']}"
        else:
            line += f": {f['message']}"
        lines.append(line)
    if len(failures) > MAX_NODES_LISTED:
        lines.append(f"  ... and {len(failures) - MAX_NODES_LISTED} more failing node(s)")
    return "\n".join(lines)


def _release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB instance in a class attribute; drop it so the file is free."""
    import gc
    from contextlib import suppress

    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - adapter always installed with the project
        return
    env = DuckDBConnectionManager._ENV
    if env is not None:
        with suppress(Exception):  # best effort: the next open recreates it
            env.close()
        DuckDBConnectionManager._ENV = None
    gc.collect()


def check_clean_inputs(paths: Paths) -> None:
    missing = [t for t in CLEAN_TABLES if not (paths.clean / f"{t}.parquet").is_file()]
    if missing:
        raise WarehouseError(
            f"clean tables missing in {paths.clean}: {', '.join(f'{m}.parquet' for m in missing)} "
            "(run the clean stage first)"
        )


def run_warehouse(paths: Paths, params: Params) -> dict[str, Any]:
    """`dbt build` (seeds, models, data and unit tests) into paths.warehouse; returns figures.

    dbt builds a temporary database next to the target (`warehouse.duckdb.tmp-<pid>`); only a build
    whose every model and test passed is checkpointed and renamed over the target. On a failure or
    an interrupt the temporary database is removed and the previous warehouse stays as it was.
    """
    wp = params.warehouse
    check_clean_inputs(paths)
    check_clean_stays(paths.clean)
    final = paths.warehouse
    atomic.sweep_stale(final)  # temporary databases (and WALs) of killed builds
    tmp = atomic.temp_path(final)
    try:
        _remove_database(tmp)
        started = time.perf_counter()
        result = invoke_dbt(dbt_args("build", paths, wp), paths, database=tmp, settings=wp)
        wall = time.perf_counter() - started
        checkpoint(tmp, wp)
        figures = warehouse_figures(tmp, wp, paths.root, seed=params.seed)
        wal = _wal(final)
        wal.unlink(missing_ok=True)  # a WAL beside the target can only belong to an older file
        interrupts.checkpoint()
        os.replace(tmp, final)
    finally:
        _remove_database(tmp)
    statuses: dict[str, int] = {}
    for r in result.results:
        key = _status(r)
        statuses[key] = statuses.get(key, 0) + 1
    warnings = sorted(r.node.unique_id for r in result.results if _status(r) == "warn")
    write_metrics(paths.metrics / "warehouse.json", figures)  # timings stay out: same data, same bytes
    figures["dbt"] = {
        "build_wall_seconds": round(wall, 2),
        "node_statuses": dict(sorted(statuses.items())),
        "warnings": warnings,
    }
    return figures


def _wal(database: Path) -> Path:
    return database.with_name(database.name + ".wal")


def _remove_database(database: Path) -> None:
    database.unlink(missing_ok=True)
    _wal(database).unlink(missing_ok=True)


def checkpoint(database: Path, settings: DuckDBSettings | None = None) -> None:
    """Fold the WAL into the database file, so the file alone is the whole warehouse."""
    import duckdb

    limits = settings or DuckDBSettings()
    con = duckdb.connect(str(database), config={"memory_limit": limits.memory_limit, "threads": limits.threads})
    try:
        con.execute("checkpoint")
    finally:
        con.close()
    if _wal(database).exists():
        raise WarehouseError(f"{database}: the write-ahead log was not folded into the database file")


# ---------------------------------------------------------------------------------------------
# Figures read back from the marts (read-only)


RATE_DIGITS = 4  # warehouse.json rounds rates at 4 decimals (ratios at 3, euros at 2)
RATIO_DIGITS = 3


def write_metrics(path: Path, figures: dict[str, Any]) -> None:
    """The DVC metric of the warehouse: readmission figures, sorted keys, rounded values."""
    metrics_io.write_json(path, figures)


def _pair(values: tuple[float, float] | None, digits: int) -> list[float | None] | None:
    return None if values is None else [rounded_or_none(v, digits) for v in values]


def department_json(d: marts.DepartmentRow, c: ClusteredFigures) -> dict[str, Any]:
    """One department of warehouse.json: counts, the rate, its ratio to the region and its
    standardised ratio, each with its patient-clustered 95% CI (the stay-level intervals, which treat
    index stays as independent, are kept for the region and department 93 only, labelled
    `*_stay_level`). Under min_cell_patients patients only `suppressed: true` is published; 1-9
    readmitted patients mask the readmission figures (`readmissions_masked: true`)."""
    f = c.departments.get(d.department)
    if f is None or f.suppressed:
        return {"suppressed": True}
    out: dict[str, Any] = {"index_stays": d.index_stays, "patients": d.patients}
    if f.masked:
        return {**out, "readmissions_masked": True}
    return {
        **out, "readmissions": d.readmissions,
        "rate": rounded_or_none(f.rate, RATE_DIGITS), "ci95": _pair(f.rate_ci, RATE_DIGITS),
        "ratio_to_region": rounded_or_none(f.ratio, RATIO_DIGITS), "ratio_ci95": _pair(f.ratio_ci, RATIO_DIGITS),
        "expected_readmissions": rounded_or_none(f.expected, 1),
        "standardised_ratio": rounded_or_none(f.standardised_ratio, RATIO_DIGITS),
        "standardised_ratio_ci95": _pair(f.standardised_ratio_ci, RATIO_DIGITS),
    }


def warehouse_figures(warehouse: Path, wp: WarehouseParams, root: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Figures of the marts; `root` (default: the working directory) places the spill directory;
    `seed` seeds the patient bootstrap of the department intervals (the top-level seed)."""
    con = connect_read_only(warehouse, wp, root or Path.cwd(), threads=1)  # same sums, same bytes
    try:
        def one(sql: str) -> tuple[Any, ...]:
            row = con.execute(sql).fetchone()
            assert row is not None
            return tuple(row)

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in con.execute(sql).fetchall()]

        n_stays, n_episodes, n_index, n_readmitted = one(
            f"""select count(*), count(distinct episode_id), count(*) filter (where is_index),
                       coalesce(sum(readmitted_30d), 0)
                from {MARTS_SCHEMA}.fct_readmissions"""
        )
        exclusions = dict(
            rows(
                f"""select coalesce(exclusion_reason, 'index'), count(*)
                    from {MARTS_SCHEMA}.fct_readmissions group by 1 order by 1"""
            )
        )
        stays = marts.index_case_mix(con)
        clustered = (clustered_figures(stays, wp.bootstrap_replicates, seed, wp.min_cell_patients)
                     if len(stays) else None)
        crude = {d.department: d for d in marts.departments(con)}  # the dashboard's query
        departments: dict[str, Any] = {
            code: department_json(d, clustered)
            for code, d in crude.items() if d.index_stays and clustered is not None
        }
        lo, hi = wilson_interval(int(n_readmitted), int(n_index))
        figures: dict[str, Any] = {
            "stays": int(n_stays),
            "episodes": int(n_episodes),
            "index_stays": int(n_index),
            "readmissions": int(n_readmitted),
            "readmission_rate": rounded_or_none(n_readmitted / n_index, RATE_DIGITS) if n_index else None,
            "readmission_rate_ci95": _pair(clustered.rate_ci, RATE_DIGITS) if clustered else [None, None],
            "readmission_rate_ci95_stay_level": [rounded_or_none(lo, RATE_DIGITS), rounded_or_none(hi, RATE_DIGITS)],
            "stays_by_exclusion": exclusions,
            "departments": departments,
            "intervals": {
                "method": "patient bootstrap (percentile 95% CI; a patient's index stays resampled together)",
                "replicates": wp.bootstrap_replicates,
                "seed": seed,
                "case_mix_model": "logistic regression on " + ", ".join(clustered.case_mix_terms if clustered else ())
                                  + " over the region's index stays (no department term), held fixed",
                "stay_level": "*_stay_level: Wilson / delta-method intervals treating index stays as independent",
            },
        }
        f93 = clustered.departments.get("93") if clustered else None
        if f93 is not None and not (f93.suppressed or f93.masked) and n_readmitted and n_index:
            x93, n93 = f93.readmissions, f93.index_stays
            _, r_lo, r_hi = ratio_to_total(x93, n93, int(n_readmitted), int(n_index))
            rest = ratio_independent(x93, n93, int(n_readmitted) - x93, int(n_index) - n93)
            s_lo, s_hi = wilson_interval(x93, n93)
            figures["dept93_vs_region"] = {
                "rate_93": departments["93"]["rate"],
                "rate_93_ci95": departments["93"]["ci95"],
                "rate_93_ci95_stay_level": [rounded_or_none(s_lo, RATE_DIGITS), rounded_or_none(s_hi, RATE_DIGITS)],
                "rate_region": figures["readmission_rate"],
                "ratio": rounded_or_none(f93.ratio, RATIO_DIGITS), "ci95": _pair(f93.ratio_ci, RATIO_DIGITS),
                "ci95_stay_level": [rounded_or_none(r_lo, RATIO_DIGITS), rounded_or_none(r_hi, RATIO_DIGITS)],
                "ratio_vs_rest_of_region": rounded_or_none(f93.ratio_vs_rest, RATIO_DIGITS),
                "ci95_vs_rest": _pair(f93.ratio_vs_rest_ci, RATIO_DIGITS),
                "ci95_vs_rest_stay_level": [rounded_or_none(rest[1], RATIO_DIGITS),
                                            rounded_or_none(rest[2], RATIO_DIGITS)],
                "expected_readmissions": departments["93"]["expected_readmissions"],
                "standardised_ratio": rounded_or_none(f93.standardised_ratio, RATIO_DIGITS),
                "standardised_ratio_ci95": _pair(f93.standardised_ratio_ci, RATIO_DIGITS),
            }
        top = marts.cost_tile(con, 10)  # the dashboard's ranking: one global ntile over index stays
        figures["top_decile_cost"] = {
            "index_stays": top.index_stays,
            "threshold_euros": rounded_or_none(top.threshold_euros, 2),
            # shares are null when the extract has no valuation (costs null)
            "cost_share_by_group": {g.group: rounded_or_none(g.share, RATE_DIGITS) for g in top.rows},
        }
        figures["copd_cost_share_top_decile"] = figures["top_decile_cost"]["cost_share_by_group"].get("COPD", 0.0)
        published, suppressed = one(
            f"""select count(*) filter (where not suppressed), count(*) filter (where suppressed)
                from {MARTS_SCHEMA}.agg_department_kpis"""
        )
        figures["kpi_cells"] = {
            "published": int(published), "suppressed": int(suppressed),
            "min_cell_patients": wp.min_cell_patients,
        }
        figures["feature_rows"] = int(one(f"select count(*) from {contracts.FEATURES_RELATION}")[0])
        # Clean stays dropped by the standard PMSI filters in staging (error GHM, control codes, geographic FINESS).
        figures["pmsi_filtered_stays"] = dict(
            rows("select pmsi_filter, count(*) from staging.stg_pmsi_exclusions group by 1 order by 1")
        )
    finally:
        con.close()
    return figures
