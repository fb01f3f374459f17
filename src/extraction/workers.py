"""Worker processes that die with the extraction that started them.

A ``kill -9`` of the main process gives it no chance to stop its workers; left alone they would finish
their slide, then wait forever for the next one. `die_with_parent` (the pool's initializer) makes a
worker delete its temporary files and exit as soon as its parent is gone: on Linux the kernel sends it
SIGTERM (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also checks its parent once a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from types import FrameType

from src.extraction import tempfiles

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 1.0
EXIT_STATUS = 70  # what a worker whose parent died exits with


def die_with_parent(main_pid: int) -> None:
    """Make this worker exit (deleting its temporary files) when its parent or `main_pid` dies.

    With the forkserver start method a worker's parent is the fork server, which exits when the main
    process does; `main_pid` is watched as well.

    Args:
        main_pid: The process that runs the extraction.
    """
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _on_sigterm)
    _set_pdeathsig(signal.SIGTERM)
    if not _alive(main_pid) or os.getppid() != parent:  # died before we were watching
        _exit()
    threading.Thread(target=_watch, args=(parent, main_pid), name="die-with-parent", daemon=True).start()


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    return False


def _watch(parent: int, main_pid: int) -> None:
    while os.getppid() == parent and _alive(main_pid):
        time.sleep(WATCH_SECONDS)
    _exit()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _exit()


def _exit() -> None:
    """Delete this process's temporary files and exit now (no cleanup handlers: the parent is gone)."""
    tempfiles.remove_own()
    os._exit(EXIT_STATUS)
