"""A SIGINT / SIGTERM swallowed where Python cannot raise it still stops the next commit."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import atomic, interrupts

# the swallowed interrupt is printed by Python as "Exception ignored": that is the case under test
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def installed() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
    interrupts._pending.clear()


class _Victim:
    pass


def _swallow_signal(signum: int) -> None:
    """Deliver `signum` inside a weakref callback, where Python prints and drops the exception."""
    victim = _Victim()
    ref = weakref.ref(victim, lambda _ref: os.kill(os.getpid(), signum))
    # CPython runs the signal handler at the next bytecode boundary inside the callback
    del victim
    gc.collect()
    assert ref() is None


def test_swallowed_sigint_stops_the_file_commit(installed: None, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    _swallow_signal(signal.SIGINT)
    assert interrupts.pending() == signal.SIGINT
    with pytest.raises(KeyboardInterrupt), atomic.atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_swallowed_sigterm_stops_the_folder_commit(installed: None, tmp_path: Path) -> None:
    target = tmp_path / "models"
    target.mkdir()
    (target / "a").write_text("old")
    _swallow_signal(signal.SIGTERM)
    with pytest.raises(interrupts.Terminated), atomic.atomic_folder(target) as tmp:
        (tmp / "a").write_text("new")
    assert (target / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    with pytest.raises(interrupts.Terminated) as caught:
        interrupts.checkpoint()
    assert interrupts.exit_code(caught.value) == ("SIGTERM", 143)


def test_no_signal_commits(installed: None, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic.write_text(target, "new")
    interrupts.checkpoint()
    assert interrupts.pending() is None
    assert target.read_text() == "new"


def test_install_forgets_an_earlier_signal(installed: None) -> None:
    _swallow_signal(signal.SIGINT)
    interrupts.install()
    assert interrupts.pending() is None


def test_handling_restores_handlers_and_forgets(tmp_path: Path) -> None:
    """A process that runs stages in turn (tests, notebooks) must not inherit the last stage's signal."""
    before = signal.getsignal(signal.SIGINT)
    with interrupts.handling():
        assert signal.getsignal(signal.SIGINT) is interrupts._handler
        _swallow_signal(signal.SIGTERM)
        assert interrupts.pending() == signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is before
    assert interrupts.pending() is None
    atomic.write_text(tmp_path / "after.txt", "ok")  # no leftover interrupt stops this commit
    assert (tmp_path / "after.txt").read_text() == "ok"


def test_cli_exit_code_after_swallowed_interrupt(tmp_path: Path) -> None:
    """End to end in a fresh process: the CLI reports 130 and the one-line message."""
    code = (
        "import os, signal, sys, weakref, gc\n"
        "from pathlib import Path\n"
        "from pipelines import atomic, cli, interrupts\n"
        "def stage(*_a, **_k):\n"
        "    class V: pass\n"
        "    v = V(); r = weakref.ref(v, lambda _r: os.kill(os.getpid(), signal.SIGINT)); del v; gc.collect()\n"
        f"    atomic.write_text(Path({str(tmp_path / 'out.txt')!r}), 'new')\n"
        "    return {}\n"
        "cli._run_stage = stage\n"
        f"sys.exit(cli.main(['--root', {str(tmp_path)!r}, 'generate']))\n"
    )
    (tmp_path / "params.yaml").write_text("{}\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "interrupted (SIGINT): generate stopped, previous outputs kept"
    assert not (tmp_path / "out.txt").exists()
