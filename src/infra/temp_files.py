"""Temporary files: one name scheme, tracked while they live, found again after a ``kill -9``.

Every file written through :mod:`src.infra.files` (a shard, an index, a checkpoint, ``status.json``, a bag...)
is first written as ``{name}.{pid}.{random}.partial`` beside its final name: a name no other process or thread
uses, that no reader takes as the file itself. This process's temporary files are tracked until they are moved
into place or deleted, so a process that must die at once (an extraction worker whose parent died, see
``src.extraction.workers``) deletes them with :func:`remove_own`. The ones a ``kill -9`` leaves behind are found
by :func:`find_leftovers` and deleted by the next process that owns the folder (holds the lock of their final
file): :func:`remove_leftovers`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

PARTIAL_SUFFIX = ".partial"

_LIVE: set[Path] = set()  # this process's temporary files not yet moved into place

# {name}.{pid}.{hex}.partial, the plain {name}.partial of older extractions, and .{name}.{pid}.{hex}.tmp (the
# run folders' name before both kinds of file shared one scheme): what a killed writer of any version left.
_TEMP_NAME = re.compile(
    rf"(?P<final>.+?)(?:\.\d+\.[0-9a-f]{{8}})?{re.escape(PARTIAL_SUFFIX)}|\.(?P<hidden>.+)\.\d+\.[0-9a-f]{{8}}\.tmp"
)


def temp_path(final: str | Path) -> Path:
    """A temporary name beside ``final`` that no other process or thread uses: ``{name}.{pid}.{hex}.partial``."""
    final = Path(final)
    return final.with_name(f"{final.name}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def track(path: Path) -> None:
    """Record a temporary file of this process (deleted by :func:`remove_own` if the process must die)."""
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
    """Delete every temporary file this process still has (called by a process that must exit at once)."""
    for path in list(_LIVE):
        discard(path)


def find_leftovers(folder: str | Path) -> dict[str, list[Path]]:
    """The temporary files in ``folder`` (not its subfolders), by the name of the file each was to become.

    Includes the names earlier versions used (see ``_TEMP_NAME``). Listing a folder once per run keeps the
    cleanup cheap for cohorts of thousands of slides.
    """
    found: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match:
            found.setdefault(match["final"] or match["hidden"], []).append(Path(entry.path))
    return found


def remove_leftovers(paths: list[Path]) -> None:
    """Delete temporary files that writers killed before their cleanup left behind (see :func:`find_leftovers`).

    Call it only while owning the folder (holding the lock that guards their final file, or for a run folder no
    live process writes): then no live process writes them.
    """
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
