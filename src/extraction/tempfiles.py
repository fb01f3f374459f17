"""Temporary files of an extraction: unique names, atomic writes, and cleanup on every way out.

Every file an extraction writes (tar shard, index, thumbnail, report) is first written under a name
that no other process can use, ``{name}.{pid}.{random}.partial``, and moved into place with
`os.replace` once complete. This process's temporary files are tracked, so a worker whose parent dies
can delete them before it exits (see `src.extraction.workers`); the ones a ``kill -9`` leaves behind
are deleted by the next run that takes the slide's lock (`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".partial"

_LIVE: set[Path] = set()  # this process's temporary files not yet moved into place


def temp_path(final: str | Path) -> Path:
    """A temporary name for `final` that no other process or thread uses: ``{name}.{pid}.{hex}.partial``."""
    final = Path(final)
    return final.with_name(f"{final.name}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def track(path: Path) -> None:
    """Record a temporary file of this process (deleted by `remove_own` if the process must die)."""
    _LIVE.add(path)


def untrack(path: Path) -> None:
    """Forget a temporary file: it was moved into place or deleted."""
    _LIVE.discard(path)


def discard(path: Path) -> None:
    """Delete a temporary file (if it is there) and forget it."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    untrack(path)


def remove_own() -> None:
    """Delete every temporary file this process still has (called by a worker whose parent died)."""
    for path in list(_LIVE):
        discard(path)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `final` through; move it into place when the block succeeds.

    On any exception (a full disk included) the temporary file is deleted and the exception re-raised;
    `final` is then untouched.
    """
    final = Path(final)
    tmp = temp_path(final)
    track(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        discard(tmp)


def write_atomic(final: str | Path, data: bytes, fsync: bool = False) -> None:
    """Write `data` to `final` through a unique temporary file (deleted on failure) and `os.replace`."""
    with atomic_path(final) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


_TEMP_NAME = re.compile(rf"(?P<final>.+?)(?:\.\d+\.[0-9a-f]{{8}})?{re.escape(PARTIAL_SUFFIX)}")


def find_leftovers(folder: str | Path) -> dict[str, list[Path]]:
    """The temporary files in `folder` (not its subfolders), by the name of the file each was to become.

    Includes the old fixed ``{name}.partial`` names. Listing a folder once per run keeps the cleanup
    cheap for cohorts of thousands of slides.
    """
    found: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match:
            found.setdefault(match["final"], []).append(Path(entry.path))
    return found


def remove_leftovers(paths: list[Path]) -> None:
    """Delete temporary files that runs killed before their cleanup left behind (see `find_leftovers`).

    Call it only while holding the lock that guards their final file: then no live process writes them.
    """
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
