"""pid_alive: running, finished (reaped or zombie) and impossible processes."""

from __future__ import annotations

import os
import subprocess
import sys

from src.processes import pid_alive


def test_running_finished_and_zombie_processes() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        for _ in range(200):  # killed but not reaped: a zombie is not running
            if not pid_alive(child.pid):
                break
            __import__("time").sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert not pid_alive(child.pid) and not pid_alive(0) and not pid_alive(-5)
