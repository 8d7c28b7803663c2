"""Crash-safe writes shared by every stage: build under a temporary name, rename into place on success.

A temporary sibling is named `<name>.tmp-<pid>` (same folder, so the final rename is atomic on
one filesystem). A stage that fails or is interrupted removes its temporary path; one that is
killed (SIGKILL) leaves it behind, and the next writer of the same target removes every stale
temporary sibling whose process is gone (`sweep_stale`). Readers never see a half-written file.

Folders are swapped with two renames (old -> `<name>.old-<pid>`, temporary -> name): a kill
between them leaves the output missing, never half-new, and DVC then sees it as missing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines import interrupts

# <name>.tmp-<pid>, <name>.old-<pid>, <name>.tmp-<pid>.wal; also clean's own `.<name>.tmp<pid>`
_STALE = re.compile(r"^\.?(?P<name>.+?)\.(?:tmp-?|old-)(?P<pid>\d+)(?:\.wal)?$")


def temp_path(target: Path, pid: int | None = None) -> Path:
    """The temporary sibling of `target` for this process."""
    return target.with_name(f"{target.name}.tmp-{os.getpid() if pid is None else pid}")


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_stale(target: Path) -> list[Path]:
    """Remove temporary siblings of `target` (`.tmp-<pid>`, `.old-<pid>`, their `.wal`) left by dead processes.

    A temporary file inside an output folder would otherwise become part of that output for DVC."""
    folder = target.parent
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _STALE.match(entry.name)
        if match is None or match["name"] != target.name:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and pid_alive(pid):
            continue  # another live process is writing it
        _remove(entry)
        removed.append(entry)
    return removed


def replace_folder(tmp: Path, target: Path) -> None:
    """Put the finished folder `tmp` at `target`, replacing what was there."""
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    _remove(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    _remove(old)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`, on any exception it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = temp_path(target)
    _remove(tmp)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: nothing was written for {target}")
        interrupts.checkpoint()  # an interrupt swallowed while writing still stops the commit
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces the folder `target`, else it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    tmp = temp_path(target)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        interrupts.checkpoint()
        replace_folder(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_text(target: Path, text: str) -> None:
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_file(target) as tmp:
        tmp.write_bytes(data)

