"""Files that are complete under their final name or absent: written beside it, flushed, fsynced, renamed.

Every writer goes through :func:`atomic_path` (or :func:`atomic_file`, the ``write_*_atomic`` helpers on it, or
:class:`PendingFile` for a file written over a longer time, such as a tar shard): the content is written to a
temporary file in the destination's own folder, ``{name}.{pid}.{hex}.partial`` (:mod:`src.infra.temp_files`),
flushed to disk (``fsync``) and renamed over the destination with :func:`os.replace`. A rename within one folder
is atomic on POSIX file systems, so a reader, a ``kill -9`` or a power cut sees the old file or the new one,
never half of one. Nothing goes through ``$TMPDIR``: a move from another file system is a copy, which a kill or
a full disk can leave truncated under the final name.

On any failure (a full disk included, and ``KeyboardInterrupt``) the temporary file is deleted and the error
re-raised; the destination is then as it was. The temporary file is tracked meanwhile, so a process that must
die at once deletes it (:func:`src.infra.temp_files.remove_own`). Only a ``kill -9`` can leave one behind:
:func:`src.infra.temp_files.find_leftovers` finds them for a caller that owns the folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from src.infra.temp_files import discard, temp_path, track, untrack

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})  # a write failed for want of space (or quota)


class PendingFile:
    """A tracked temporary file beside ``final``: :meth:`commit` moves it into place, :meth:`discard` deletes it.

    For a file written over a longer time than one block (a tar shard); :func:`atomic_path` is the usual way.
    The parent folder is created if needed.

    Attributes:
        final: The destination.
        path: The temporary file to write (``{name}.{pid}.{hex}.partial``); not created here.
    """

    def __init__(self, final: str | Path) -> None:
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = temp_path(self.final)
        track(self.path)

    def commit(self, fsync: bool = True) -> None:
        """Move the written file into place (with ``fsync``: its content, then the folder's entry, on disk)."""
        if fsync:
            _fsync_file(self.path)
        os.replace(self.path, self.final)
        untrack(self.path)
        if fsync:
            _fsync_folder(self.final.parent)

    def discard(self) -> None:
        """Delete the temporary file (if it is there): ``final`` stays as it was. Never raises."""
        discard(self.path)


@contextlib.contextmanager
def atomic_path(final: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` to write; when the block succeeds, move it into place.

    The parent folder is created if needed. With ``fsync`` the file's content (and then the folder's entry)
    is flushed to disk before and after the rename, so that a power cut cannot leave an empty file under
    the final name either.

    Args:
        final: The destination.
        fsync: Flush the content to disk before the rename (False only for files that are cheap to redo).

    Raises:
        Whatever the block or the write raises (``OSError`` ENOSPC for a full disk); the temporary file is then
        deleted and ``final`` is untouched.
    """
    pending = PendingFile(final)
    try:
        yield pending.path
        pending.commit(fsync=fsync)
    finally:
        pending.discard()  # gone already after a successful rename


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "wb", fsync: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``final`` for writing; when the block succeeds, move it into place.

    Like :func:`atomic_path`, with the file opened (``mode``: ``"wb"`` or ``"w"``, text as UTF-8) and closed
    for the caller: a write or close that fails (a full disk) deletes the temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r}: atomic_file writes a whole new file, use 'wb' or 'w'")
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(final, fsync=fsync) as tmp, open(tmp, mode, encoding=encoding) as handle:
        yield handle
        handle.flush()


def write_bytes_atomic(path: str | Path, data: bytes | memoryview, fsync: bool = True) -> None:
    """Write ``data`` to ``path``: complete under that name, or (on any failure) the old file untouched."""
    with atomic_file(path, "wb", fsync=fsync) as handle:
        handle.write(data)


def write_text_atomic(path: str | Path, text: str, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path``: complete under that name, or (on any failure) the old file untouched."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | Path, record: Any, indent: int | None = 2, fsync: bool = True) -> None:
    """Write ``record`` as JSON (``default=str``) to ``path``, atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(record, indent=indent, default=str), fsync=fsync)


def move_file(source: str | Path, target: str | Path) -> None:
    """Rename ``source`` to ``target`` (same folder or file system) in one step, replacing ``target``.

    A reader sees ``target`` as it was or as ``source`` was, never half of either; the folder's entry is then
    flushed to disk. For setting a file aside under another name (``last.ckpt`` → ``last.ckpt.unusable``).
    """
    os.replace(source, target)
    _fsync_folder(Path(target).parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush the folder's entries (the rename); some file systems cannot, which only costs durability."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
