"""DuckDB resources from params.yaml reach dbt's session and the read-only connections; the chain
benchmark's measuring helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest
from pydantic import ValidationError

from pipelines import bench_chain
from pipelines.config import DuckDBSettings, Params, Paths, load_params
from pipelines.duckdb_settings import connect_read_only
from pipelines.warehouse import WarehouseParams, dbt_args, invoke_dbt

PROJECT = Path(__file__).resolve().parents[2]
SETTINGS_SQL = (
    "select current_setting('memory_limit') as memory_limit, current_setting('threads') as threads, "
    "current_setting('temp_directory') as temp_directory"
)


def test_params_yaml_sets_the_resources() -> None:
    wp = load_params(PROJECT / "params.yaml").warehouse
    assert (wp.memory_limit, wp.threads, wp.temp_directory) == ("6GB", 2, "data/tmp/duckdb")
    # the toolkit's connections (features, report) take the same settings
    assert wp.connect_config(PROJECT)["memory_limit"] == "6GB"


@pytest.mark.parametrize("bad", [{"memory_limit": "lots"}, {"memory_limit": "6"}, {"threads": 0}])
def test_bad_resources_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="warehouse"):
        Params.model_validate({"warehouse": bad})


def test_temp_directory_is_under_the_project_root(tmp_path: Path) -> None:
    s = DuckDBSettings(memory_limit="512MB", threads=1, temp_directory="data/tmp/duckdb")
    assert s.temp_path(tmp_path) == (tmp_path / "data" / "tmp" / "duckdb").resolve()
    assert s.environ(tmp_path) == {
        "SNDS_DUCKDB_MEMORY_LIMIT": "512MB",
        "SNDS_DUCKDB_THREADS": "1",
        "SNDS_DUCKDB_TEMP_DIRECTORY": str((tmp_path / "data" / "tmp" / "duckdb").resolve()),
    }
    absolute = DuckDBSettings(temp_directory=str(tmp_path / "spill"))
    assert absolute.temp_path(Path("/elsewhere")) == (tmp_path / "spill").resolve()


def test_read_only_connection_applies_the_limits(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    s = DuckDBSettings(memory_limit="1GB", threads=1, temp_directory="spill")
    con = connect_read_only(db, s, tmp_path)
    try:
        limit, threads, temp = con.execute(SETTINGS_SQL).fetchone() or ()
    finally:
        con.close()
    assert limit == "953.6 MiB"  # DuckDB shows 1 GB (10^9 bytes) in binary units
    assert int(threads) == 1
    assert temp == str((tmp_path / "spill").resolve())
    assert (tmp_path / "spill").is_dir()


def test_dbt_session_runs_under_the_params(tmp_path: Path) -> None:
    """`dbt show` through the stage's own invocation reads the settings back from DuckDB."""
    import shutil

    shutil.copytree(PROJECT / "dbt", tmp_path / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
    paths = Paths(tmp_path)
    wp = WarehouseParams(memory_limit="750MB", threads=1, temp_directory="data/tmp/spill")
    args = dbt_args("show", paths, wp, "--inline", SETTINGS_SQL, "--output", "json")
    result = invoke_dbt(args, paths, database=tmp_path / "data" / "w.duckdb", settings=wp)
    table = result.results[0].agate_table
    row = dict(zip(table.column_names, table.rows[0], strict=True))
    assert row["memory_limit"] == "715.2 MiB"  # 750 * 10^6 bytes
    assert int(row["threads"]) == 1
    assert row["temp_directory"] == str((tmp_path / "data" / "tmp" / "spill").resolve())


def test_run_child_measures_the_childs_peak_memory(tmp_path: Path) -> None:
    grab = "b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('{\"ok\": 1}')"
    run = bench_chain.run_child([sys.executable, "-c", grab], tmp_path, "grab")
    assert run.peak_mb >= 300
    assert run.peak_mb < 2000
    assert bench_chain.last_json(run.stdout) == {"ok": 1}
    with pytest.raises(bench_chain.BenchError, match="boom failed \\(exit 3\\)"):
        bench_chain.run_child([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path, "boom")


def test_last_json_takes_the_stage_summary() -> None:
    out = 'log line\n{\n  "stage": "clean",\n  "raw_rows": 12\n}\n'
    assert bench_chain.last_json(out) == {"stage": "clean", "raw_rows": 12}
    assert bench_chain.last_json("no json here") == {}


def test_table_prints_na_without_a_reference() -> None:
    r = bench_chain.ScaleResult(scale=1.0, raw_rows=1000, parse_floor_s=2.0, pandas_s=None)
    r.stages["generate"] = bench_chain.Run(3.0, 100.0, "")
    r.stages["clean"] = bench_chain.Run(5.0, 250.0, "")
    text = bench_chain.table([r], ("generate", "clean", "warehouse"))
    row = text.splitlines()[1].split()
    assert row[:5] == ["1", "1,000", "3.0/100", "5.0/250", "n/a"]
    assert row[5:9] == ["8.0", "250", "2.50", "n/a"]


def test_slowest_models_reads_dbt_run_results(tmp_path: Path) -> None:
    import json

    target = tmp_path / "dbt" / "target"
    target.mkdir(parents=True)
    results = [
        {"unique_id": "model.p.int_episodes", "execution_time": 2.5},
        {"unique_id": "test.p.not_null_x", "execution_time": 9.0},  # tests are not models
        {"unique_id": "model.p.fct_stays", "execution_time": 4.0},
        {"unique_id": "model.p.dim_hospitals", "execution_time": 0.1},
    ]
    (target / "run_results.json").write_text(json.dumps({"results": results}), encoding="utf-8")
    assert bench_chain.slowest_models(tmp_path, n=2) == [("fct_stays", 4.0), ("int_episodes", 2.5)]
    assert bench_chain.slowest_models(tmp_path / "missing") == []
