"""params.yaml is strict: every section and key is declared, a typo stops the load and names itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pipelines.config import Params, ParamsError, load_params

PROJECT = Path(__file__).resolve().parents[2]
RAW: dict[str, Any] = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _leaf_keys(model: type[BaseModel], data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path written in params.yaml (nested sections such as generate.dirt included)."""
    keys: list[tuple[str, ...]] = []
    for key, value in data.items():
        keys.append((*prefix, key))
        annotation = model.model_fields[key].annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _leaf_keys(annotation, value, (*prefix, key))
    return keys


KEY_PATHS = _leaf_keys(Params, RAW)


def test_every_section_of_params_yaml_is_declared() -> None:
    params = load_params(PROJECT / "params.yaml")
    assert set(RAW) == set(Params.model_fields), "params.yaml and Params declare the same sections"
    assert params.promote.objective_tolerance == RAW["promote"]["objective_tolerance"]
    assert params.serving.max_request_bytes == RAW["serving"]["max_request_bytes"]
    assert params.monitor.fairness_groups == tuple(RAW["monitor"]["fairness_groups"])
    assert len(KEY_PATHS) > 100  # the walk below really covers the file


def test_a_misspelled_section_fails_and_names_it(tmp_path: Path) -> None:
    raw = {k: v for k, v in RAW.items() if k != "promote"}
    raw["promte"] = RAW["promote"]
    with pytest.raises(ParamsError) as info:
        load_params(_write(tmp_path, raw))
    message = str(info.value)
    assert "promte: unknown key (did you mean 'promote'?)" in message
    assert str(tmp_path / "params.yaml") in message
    assert "\n" not in message  # one line for the CLI


@pytest.mark.parametrize("path", KEY_PATHS, ids=".".join)
def test_a_misspelled_key_anywhere_fails_and_names_it(tmp_path: Path, path: tuple[str, ...]) -> None:
    raw = yaml.safe_load(yaml.safe_dump(RAW))
    parent = raw
    for part in path[:-1]:
        parent = parent[part]
    typo = path[-1] + "x" if len(path[-1]) > 3 else "x" + path[-1]
    parent[typo] = parent.pop(path[-1])
    with pytest.raises(ParamsError) as info:
        load_params(_write(tmp_path, raw))
    dotted = ".".join((*path[:-1], typo))
    assert f"{dotted}: unknown key" in str(info.value)
    assert f"did you mean '{'.'.join(path)}'?" in str(info.value)


def test_a_wrong_value_names_the_key_and_the_value(tmp_path: Path) -> None:
    raw = yaml.safe_load(yaml.safe_dump(RAW))
    raw["train"]["n_trials"] = "many"
    raw["warehouse"]["threads"] = 0
    with pytest.raises(ParamsError) as info:
        load_params(_write(tmp_path, raw))
    assert "train.n_trials: Input should be a valid integer" in str(info.value)
    assert "'many'" in str(info.value)
    assert "warehouse.threads: Input should be greater than or equal to 1 (got 0)" in str(info.value)


def test_a_left_out_section_takes_its_defaults(tmp_path: Path) -> None:
    raw = {k: v for k, v in RAW.items() if k not in ("serving", "report")}
    params = load_params(_write(tmp_path, raw))
    assert params.serving == Params().serving
    assert params.report.min_cell_patients == 10
    assert load_params(_write(tmp_path, {})) == Params()  # an empty file is all defaults


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines import cli

    raw = yaml.safe_load(yaml.safe_dump(RAW))
    raw["monitor"]["drift_shar"] = raw["monitor"].pop("drift_share")
    _write(tmp_path, raw)
    assert cli.main(["--root", str(tmp_path), "features"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "monitor.drift_shar: unknown key (did you mean 'monitor.drift_share'?)" in err[0]
