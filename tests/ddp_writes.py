"""``python tests/ddp_writes.py <train.py overrides>``: train.py, recording the files each process writes.

Lightning re-runs ``sys.argv`` for the other DDP ranks, so they run this script too. Every file a process
opens for writing, renames or removes under ``$DDP_WRITES_UNDER`` is appended to
``$DDP_WRITES_DIR/rank<LOCAL_RANK>-<pid>.txt`` (Python's audit hooks: writes made in C by a library,
e.g. Parquet, are not seen). tests/test_ddp.py reads them to check that rank 1 writes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNDER = os.path.realpath(os.environ["DDP_WRITES_UNDER"])
RECORD = Path(os.environ["DDP_WRITES_DIR"]) / f"rank{os.environ.get('LOCAL_RANK', '0')}-{os.getpid()}.txt"
RECORD.parent.mkdir(parents=True, exist_ok=True)
_record = open(RECORD, "a", buffering=1)  # noqa: SIM115 (open for the life of the process)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _note(path: object) -> None:
    if isinstance(path, int | bytes) or path is None:
        return
    real = os.path.realpath(os.fspath(path))
    if real.startswith(UNDER):
        _record.write(os.path.relpath(real, UNDER) + "\n")


def _hook(event: str, args: tuple) -> None:
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS):
            _note(path)
    elif event in ("os.rename", "os.remove", "os.rmdir", "shutil.rmtree"):
        _note(args[1] if event == "os.rename" else args[0])


sys.addaudithook(_hook)
sys.path.insert(0, str(REPO))
os.chdir(REPO)
sys.argv[0] = str(Path(__file__).resolve())  # what Lightning re-runs for rank 1: this script again

script = REPO / "train.py"  # run as the main script (Hydra finds conf/ next to it), argv[0] left as it is
exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__main__", "__file__": str(script)})
