"""Locks between runs: one extraction of a slide at a time, one report update at a time.

A lock is a file (``{slide}.lock`` in the shard folder, ``extraction_report.csv.lock``) holding
``{"pid", "host", "since"}`` for messages. Where the filesystem supports it the file is locked with
``fcntl.flock``, which the kernel releases when the holder dies, even by ``kill -9``: a lock is then
never stale. Elsewhere (no ``fcntl``, or a filesystem that refuses ``flock``) the lock is the file's
existence (``O_EXCL``), and a lock whose holder is a dead PID on this host, or older than
`STALE_SECONDS` from another host, is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Self

from src.infra.processes import pid_alive

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["STALE_SECONDS", "FileLock"]

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
STALE_SECONDS = 6 * 3600.0  # a lock file from another host older than this is abandoned (no-flock mode)
UNWRITTEN_SECONDS = 60.0  # a lock file still empty after this long: its creator died (no-flock mode)
POLL_SECONDS = 0.2
NO_FLOCK_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF}


class FileLock:
    """An exclusive lock between processes (and hosts sharing the folder) on a lock file.

    The lock file is deleted on release; nothing is left behind after a clean run.

    Args:
        path: The lock file.
        stale_seconds: Without ``flock``: age after which another host's lock is abandoned.
    """

    def __init__(self, path: str | Path, stale_seconds: float = STALE_SECONDS) -> None:
        self.path = Path(path)
        self.stale_seconds = stale_seconds
        self._fd: int | None = None
        self._use_flock = fcntl is not None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock.

        Args:
            blocking: Wait until the lock is free; False: return False at once when it is held.
            timeout: Seconds to wait at most (None: as long as its holder holds it).

        Returns:
            Whether the lock is now held.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._try_once():
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        """Give the lock back (and delete the lock file); harmless when not held."""
        if self._fd is None:
            return
        # delete while still holding it: a waiter that opened this file sees it is gone and retries
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def holder(self) -> str:
        """Who holds the lock, for messages: ``"pid 123 on host h since 2024-05-01 10:00:00"``."""
        info = _read_info(self.path)
        if not info:
            return "an unknown process"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
        return f"pid {info.get('pid')} on host {info.get('host')} since {since}"

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _try_once(self) -> bool:
        if self._use_flock:
            try:
                return self._try_flock()
            except OSError as err:
                if err.errno not in NO_FLOCK_ERRNOS:
                    raise
                log.debug("flock unsupported for %s (%s); using O_EXCL lock files", self.path, err)
                self._use_flock = False
        return self._try_exclusive()

    def _try_flock(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        try:  # the file we locked may have been released and deleted meanwhile: then try again
            current = os.stat(self.path)
            opened = os.fstat(fd)
            same = (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev)
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        _write_info(fd)
        self._fd = fd
        return True

    def _try_exclusive(self, retry: bool = True) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not (retry and self._stale()):
                return False
            log.warning("Taking over the stale lock %s (held by %s)", self.path, self.holder())
            with contextlib.suppress(OSError):
                self.path.unlink()
            return self._try_exclusive(retry=False)
        _write_info(fd)
        self._fd = fd
        return True

    def _stale(self) -> bool:
        """Without flock: whether the existing lock file's holder is gone."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return False  # released meanwhile: just try again
        info = _read_info(self.path)
        if not info:
            return age > UNWRITTEN_SECONDS
        if info.get("host") == socket.gethostname():
            return not pid_alive(int(info.get("pid", -1)))
        return age > self.stale_seconds


def _write_info(fd: int) -> None:
    """Who holds the lock, for messages only: best effort (a full disk may refuse even these bytes)."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
