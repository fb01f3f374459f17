"""The full check of a tar shard: the CRC32 of every byte against its index, remembered per file.

A shard's index records the CRC32 of the whole tar (computed while it was written). Reading the whole tar
costs about a second per GB, so a shard that passed is not read again while it stays the same file: the
check leaves ``{slide}.verified.json`` beside it, holding the tar's size, mtime (ns) and inode and the CRC32
that matched. Any write to the tar changes its mtime, a copy changes its inode, so such a shard is read
again; a shard the disk damages in place without a write (bit rot) is not. When the stamp cannot be written
(a read-only shard folder) the check runs once per run: a process also remembers the files it checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from src.infra.files import write_bytes_atomic

log = logging.getLogger(__name__)

VERIFIED_SUFFIX = ".verified.json"
CHUNK_BYTES = 8 << 20

_CHECKED: dict[Path, dict[str, int]] = {}  # this process's matches: tar -> stamp


def verified_path(tar: str | Path) -> Path:
    """The stamp of a checked tar: ``{slide}.verified.json`` beside ``{slide}.tar``."""
    tar = Path(tar)
    return tar.with_name(f"{tar.name.removesuffix('.tar')}{VERIFIED_SUFFIX}")


def file_crc32(path: str | Path) -> int:
    """CRC32 of a whole file, streamed in 8 MiB chunks."""
    crc = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


def _stamp(tar: Path, crc32: int) -> dict[str, int]:
    stat = tar.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "crc32": int(crc32)}


def record_verified(tar: str | Path, crc32: int) -> None:
    """Remember that ``tar`` (as it is now) holds the bytes whose CRC32 is ``crc32``; never raises."""
    tar = Path(tar)
    try:
        stamp = _stamp(tar, crc32)
        _CHECKED[tar] = stamp
        write_bytes_atomic(verified_path(tar), json.dumps(stamp).encode(), fsync=False)
    except OSError as err:  # a read-only shard folder, a full disk: the next run checks again
        log.debug("Could not record the check of %s (%s)", tar, err)


def forget_verified(tar: str | Path) -> None:
    """Drop a tar's stamp, so the next run reads it again in full (a tar that does not hold what it should)."""
    _CHECKED.pop(Path(tar), None)
    with contextlib.suppress(OSError):
        verified_path(tar).unlink(missing_ok=True)


def crc_damage(tar: str | Path, record: Mapping[str, Any]) -> str | None:
    """Why ``tar`` does not hold the bytes its index recorded (``record``: the index's ``"tar"`` entry), or None.

    Reads the whole tar unless its stamp says this very file (size, mtime, inode) already matched the same
    CRC32; a match is stamped.
    """
    tar = Path(tar)
    expected = record.get("crc32")
    if not isinstance(expected, int):
        return f"the index of {tar} records no CRC32 (an older extraction)"
    try:
        stamp = _stamp(tar, expected)
    except OSError as err:
        return f"{tar} cannot be read ({err})"
    if _CHECKED.get(tar) == stamp:
        return None
    with contextlib.suppress(OSError, ValueError):
        if json.loads(verified_path(tar).read_text()) == stamp:
            return None
    try:
        crc = file_crc32(tar)
    except OSError as err:
        return f"{tar} cannot be read ({err})"
    if crc != expected:
        return (
            f"the CRC32 of {tar} is {crc:08x} but its index records {expected:08x} "
            "(the file was damaged or overwritten after it was written)"
        )
    record_verified(tar, expected)
    return None
