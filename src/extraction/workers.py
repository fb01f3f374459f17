"""Worker processes that die with the extraction that started them.

A ``kill -9`` of the main process gives it no chance to stop its workers; left alone they would finish
their slide, then wait forever for the next one. `die_with_parent` (the pool's initializer) starts a
daemon thread that deletes the worker's temporary files and exits the worker as soon as the main
process is gone: on Linux it sleeps on a pidfd of the main process, which wakes it the moment that
process exits (no polling, immune to PID reuse); elsewhere it checks once a second.

The main process is not the worker's parent with the forkserver start method (the fork server is,
and it lives as long as any of its children), so ``prctl(PR_SET_PDEATHSIG)`` alone would not do; it is
set as well, for the death of the direct parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time
from types import FrameType

from src.infra.processes import pid_alive
from src.infra.temp_files import remove_own

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0
EXIT_STATUS = 70  # what a worker whose parent died exits with


def die_with_parent(main_pid: int) -> None:
    """Make this worker exit, deleting its temporary files, when `main_pid` or its own parent dies.

    Also makes SIGTERM do the same (the pool terminates broken workers with it).

    Args:
        main_pid: The process that runs the extraction.
    """
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _on_sigterm)
    _set_pdeathsig(signal.SIGTERM)
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):  # os.pidfd_open: Linux >= 5.3, Python >= 3.9
        pidfd = os.pidfd_open(main_pid)
    if not pid_alive(main_pid) or os.getppid() != parent:  # died before we were watching
        _exit()
    threading.Thread(target=_watch, args=(main_pid, parent, pidfd), name="die-with-parent", daemon=True).start()


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    return False


def _watch(main_pid: int, parent: int, pidfd: int | None) -> None:
    if pidfd is not None:
        with contextlib.suppress(OSError, ValueError):
            select.select([pidfd], [], [])  # readable once the main process has exited
            _exit()
    while os.getppid() == parent and pid_alive(main_pid):
        time.sleep(WATCH_SECONDS)
    _exit()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _exit()


def _exit() -> None:
    """Delete this process's temporary files and exit now (no cleanup handlers: the parent is gone)."""
    remove_own()
    os._exit(EXIT_STATUS)
