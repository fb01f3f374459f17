"""Writing the files of a bag folder: complete under their final name or absent, with errors that say what to do.

HDF5 never writes to the bag folder: a bag is built in memory (see :meth:`src.features.bags.FeatureBags.extract_slide`)
and written here with plain file writes to a temporary name beside its final name, then renamed. On a full disk
the HDF5 library can crash the process (a segmentation fault) when it closes a file it could not flush; a plain
write fails with an ``OSError`` instead, the temporary file is deleted, and the error names the file.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from src.infra.files import DISK_FULL_ERRNOS, write_bytes_atomic
from src.infra.temp_files import find_leftovers

LEFTOVER_AGE_S = 3600  # a temporary bag file this old is a killed run's (a bag is written from memory in seconds)


def remove_old_leftovers(folder: Path) -> None:
    """Delete temporary bag files that a killed run left (older than ``LEFTOVER_AGE_S``; a live write is seconds)."""
    now = time.time()
    for paths in find_leftovers(folder).values():
        for path in paths:
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > LEFTOVER_AGE_S:
                    path.unlink()


def write_or_explain(path: Path, data: bytes | memoryview, what: str) -> None:
    """Write ``data`` to ``path`` atomically; an OSError (a full disk) becomes one naming ``what`` and the file.

    The temporary file is deleted on failure (`write_bytes_atomic`), so ``path`` is either complete or as it was.
    """
    try:
        write_bytes_atomic(path, data, fsync=False)
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno in DISK_FULL_ERRNOS:
            fix = "Free disk space there (or set dataset.bags.root to another disk) and run again"
        else:
            fix = "Fix that and run again"
        raise OSError(
            err.errno,
            f"Could not write {what} to {path}: {reason}. {fix}: the bags already complete are kept, and the rerun "
            "extracts only the missing ones",
        ) from err
