"""A small disk that fills up, for tests of what a full disk leaves behind.

Where the machine allows it (root, or a user namespace that may mount), the folder is a real tmpfs of a few
MB: every write, by Python, torch or Lightning, fails with ``ENOSPC`` once it is full, and deleting a file
frees its space. Elsewhere, as ``tests/extraction/test_disk_full.py`` does, files opened for writing under the
folder with Python's ``open`` share a quota and then raise ``ENOSPC`` (writes by other means are not
counted, and deleting a file frees nothing).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REAL_OPEN = builtins.open


class SmallDisk:
    """A folder with ``size`` bytes of room.

    Attributes:
        path: The folder.
        real: True for a real tmpfs (then the space of deleted files is free again).
    """

    def __init__(self, path: Path, real: bool) -> None:
        self.path = path
        self.real = real


@contextlib.contextmanager
def small_disk(folder: Path, size: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    """Make ``folder`` a disk of ``size`` bytes for the duration of the block (see the module doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    if _mount_tmpfs(folder, size):
        try:
            yield SmallDisk(folder, real=True)
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
        return
    quota = FullDisk(folder, size)
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", quota.open)
        yield SmallDisk(folder, real=False)


def _mount_tmpfs(folder: Path, size: int) -> bool:
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


class FullDisk:
    """Files opened for writing under ``folder`` share ``free`` bytes; then writes raise ENOSPC."""

    def __init__(self, folder: Path, free: float) -> None:
        self.folder = folder.resolve()
        self.free = free
        self.used = 0

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = REAL_OPEN(file, mode, *args, **kwargs)
        writing = isinstance(file, str | os.PathLike) and set(mode) & set("wax+")
        if writing and Path(file).resolve().is_relative_to(self.folder):
            return _CountedFile(handle, self)
        return handle


class _CountedFile:
    def __init__(self, handle: Any, quota: FullDisk) -> None:
        self._handle, self._quota = handle, quota

    def write(self, data: bytes | str) -> int:
        size = len(data)
        room = max(0, int(min(self._quota.free - self._quota.used, size)))
        if room:
            self._handle.write(data[:room])
            self._quota.used += room
        if room < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return room

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._handle)

    def __enter__(self) -> _CountedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()
