"""The command line: options after the stage, publish's --via, the stages' progress lines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from pipelines import cli


def test_publish_takes_via_after_the_stage() -> None:
    args = cli.build_parser().parse_args(["publish", "--via", "csv", "-q"])
    assert (args.stage, args.via, args.quiet) == ("publish", "csv", True)
    assert cli.build_parser().parse_args(["publish"]).via is None  # $PUBLISH_VIA, else parquet


def test_publish_refuses_an_unknown_via(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(["publish", "--via", "xml"])
    assert stopped.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_publish_passes_via_to_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_publish(paths: Any, params: Any, via: str | None = None) -> dict[str, Any]:
        seen["via"] = via
        return {"tables": 0}

    import pipelines.cloud.publish as publish

    monkeypatch.setattr(publish, "run_publish", fake_publish)
    (tmp_path / "params.yaml").write_text("seed: 1\n", encoding="utf-8")
    assert cli.main(["--root", str(tmp_path), "publish", "--via", "csv"]) == 0
    assert seen == {"via": "csv"}


def test_stage_info_lines_reach_stderr_once(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("pipelines")
    before = list(logger.handlers)
    for handler in before:  # one bound to an earlier test's stderr
        logger.removeHandler(handler)
    try:
        cli.show_progress_lines()
        cli.show_progress_lines()  # a second call adds nothing: each line once
        logging.getLogger("pipelines.train").info("trial %d done", 3)
        logging.getLogger("idf_test_library").info("a library line")  # other loggers keep their own level
        err = capsys.readouterr().err
        assert err.count("INFO pipelines.train: trial 3 done") == 1
        assert "a library line" not in err
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
