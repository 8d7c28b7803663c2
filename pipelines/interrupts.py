"""SIGINT / SIGTERM that cannot be lost: remembered as a flag, raised at once and again at every commit.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal lands. If
that is a weakref callback, a `__del__` or a C callback, the exception is printed as "Exception
ignored in ..." and dropped, and the stage runs on to write its outputs. So the handler also
records the signal, and `checkpoint()` (called by the atomic writer before every rename into
place, and by stages before side effects such as registering a model) raises it again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every stage's cleanup (temporary outputs) runs."""


_pending: list[int] = []  # signal numbers received since install(); the first one decides the exit code


def _raise_for(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated(signal.Signals(signum).name)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _handler(signum: int, frame: FrameType | None) -> None:
    del frame
    _pending.append(signum)
    _raise_for(signum)


def install() -> None:
    """Route SIGINT and SIGTERM through the recording handler (main thread only; no-op elsewhere)."""
    _pending.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


@contextmanager
def handling() -> Iterator[None]:
    """install() for the duration of a stage, then the previous handlers back and the record forgotten
    (a caller that runs several stages in one process must not inherit the last one's signal)."""
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    install()
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        _pending.clear()


def pending() -> int | None:
    """The first signal received since install(), or None."""
    return _pending[0] if _pending else None


def checkpoint() -> None:
    """Raise the interrupt again if one arrived and was swallowed: call before anything irreversible."""
    signum = pending()
    if signum is not None:
        _raise_for(signum)


def exit_code(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(signal name, shell exit code) for an interrupt: SIGTERM 143, otherwise SIGINT 130."""
    signum = signal.SIGTERM if isinstance(exc, Terminated) or pending() == signal.SIGTERM else signal.SIGINT
    return signal.Signals(signum).name, 128 + signum
