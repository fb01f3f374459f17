"""The shard format: one WebDataset-compatible tar per slide plus a JSON index.

``{slide}.tar`` holds, for tile i in write order, ``{i:06d}.jpg`` (or ``.png``) and
``{i:06d}.json`` = ``{"slide", "loc_x", "loc_y"}`` (tile centre, level-0 px). Labels are never
stored: one extraction serves every outcome and split. The tar is written as
``{slide}.tar.{pid}.{random}.partial`` (a name no other run uses) and renamed when complete;
``{slide}.index.json`` is written after it, atomically, with ``"status": "complete"``, the slide
file's fingerprint and the tar's size and checksums. A tar without a complete index, whose size or
checksum differs from its index (truncated, overwritten), or whose slide file has since been
replaced, is unfinished. Every read of an index checks the tar's size and the CRC32 of its first and
last 64 KiB; where a run decides whether a slide needs extracting (``verify=True``), the CRC32 of the
whole tar is checked too (`src.extraction.shard_crc`: once per file, remembered beside it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Self

from src.extraction.shard_crc import crc_damage, record_verified
from src.infra.files import PendingFile, write_json_atomic
from src.slides.mpp import MppChoice
from src.slides.tile_settings import TileSettings

INDEX_SUFFIX = ".index.json"
IMAGE_EXTENSIONS = ("jpg", "png")
FINGERPRINT_BYTES = 1 << 16  # hashed at each end of a slide file
TAR_ENDS_BYTES = 1 << 16  # checksummed at each end of a tar shard whenever its index is read


def slide_fingerprint(path: str | Path) -> dict[str, Any]:
    """Identify a slide file's content cheaply: size, mtime and a hash of its first and last 64 KiB.

    Args:
        path: The slide file.

    Returns:
        ``{"size", "mtime_ns", "sha1_ends"}``.
    """
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha1(str(stat.st_size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
        if stat.st_size > FINGERPRINT_BYTES:
            handle.seek(max(FINGERPRINT_BYTES, stat.st_size - FINGERPRINT_BYTES))
            digest.update(handle.read(FINGERPRINT_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha1_ends": digest.hexdigest()}


def same_slide_file(recorded: Mapping[str, Any] | None, path: str | Path) -> bool:
    """Whether `path` still holds the slide file recorded in an index.

    Same size and same mtime is enough (a ``stat`` only); when the mtime differs (a copy, a
    ``touch``), the hash of the file's ends decides.
    """
    if not recorded:
        return False
    try:
        stat = Path(path).stat()
    except OSError:
        return False
    if stat.st_size != recorded.get("size"):
        return False
    if stat.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    return slide_fingerprint(path)["sha1_ends"] == recorded.get("sha1_ends")


def shard_dir(shards_root: str | Path, settings: TileSettings) -> Path:
    """Return the folder holding the shards for these settings: ``shards_root / key``."""
    return Path(shards_root) / settings.key


def tar_path(shard_folder: str | Path, slide: str) -> Path:
    """Return the path of a slide's tar shard."""
    return Path(shard_folder) / f"{slide}.tar"


def index_path(shard_folder: str | Path, slide: str) -> Path:
    """Return the path of a slide's index file."""
    return Path(shard_folder) / f"{slide}{INDEX_SUFFIX}"


def lock_path(shard_folder: str | Path, slide: str) -> Path:
    """Return the path of a slide's lock file (held while a run extracts the slide)."""
    return Path(shard_folder) / f"{slide}.lock"


def read_index(
    shard_folder: str | Path,
    slide: str,
    slide_path: str | Path | None = None,
    mpp: MppChoice | None = None,
    verify: bool = False,
) -> dict[str, Any] | None:
    """Return a slide's index if the slide is completely extracted, else None.

    None when the index or the tar is missing, the index is unreadable or not marked
    complete, its location count disagrees with ``num_tiles``, the tar's size or the checksum of
    its first and last 64 KiB differs from the index (see `shard_damage`), (with `verify`) the
    CRC32 of the whole tar differs from the index, (with `slide_path`, when that file exists) the
    slide file is not the one the shard was extracted from, or (with `mpp`) the shard was extracted
    at another MPP than `mpp` gives the slide now.

    Args:
        shard_folder: The settings' shard folder.
        slide: The slide name.
        slide_path: The slide file to check the index's fingerprint against; None (or a file
            that is gone) skips the check, so shards outlive their slides.
        mpp: This run's MPP choice for the slide (column value, override); None skips the check.
        verify: Also check the CRC32 of the whole tar (read once per file, see
            `src.extraction.shard_crc`): where a run decides whether the slide needs extracting.
    """
    path = index_path(shard_folder, slide)
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("status") != "complete":
        return None
    if len(index.get("locations", ())) != index.get("num_tiles"):
        return None
    if tar_damage(tar_path(shard_folder, slide), index.get("tar"), full=verify) is not None:
        return None
    replaced = (
        slide_path is not None
        and Path(slide_path).exists()
        and not same_slide_file(index.get("slide_file"), slide_path)
    )
    if replaced:
        return None
    if mpp is not None and not mpp.matches(index):
        return None
    return index


def tar_damage(path: Path, record: Mapping[str, Any] | None, full: bool = False) -> str | None:
    """Why the tar at `path` is not the one an index recorded (``record``: its ``"tar"`` entry), or None.

    Costs a ``stat`` and two 64 KiB reads, so it runs whenever an index is read. With `full`, the
    CRC32 of the whole tar is checked too (`src.extraction.shard_crc.crc_damage`: read once per file).
    """
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path} is missing"
    if not record or "bytes" not in record:
        return f"the index of {path} records no size or checksum (an older extraction)"
    if size != record["bytes"]:
        return f"{path} is {size:,} bytes but its index records {record['bytes']:,} (truncated or overwritten)"
    try:
        crc = ends_crc32(path, size)
    except OSError as err:
        return f"{path} cannot be read ({err})"
    if crc != record.get("crc32_ends"):
        return f"the checksum of {path} differs from its index (the file was damaged or overwritten)"
    return crc_damage(path, record) if full else None


def shard_damage(shard_folder: str | Path, slide: str, verify: bool = True) -> str | None:
    """Why a slide whose index is marked complete cannot be used (its tar is damaged), or None.

    None also when there is no complete index at all: the slide is then simply not extracted.
    With `verify` (the default) the CRC32 of the whole tar is checked too (see `read_index`).
    """
    try:
        index = json.loads(index_path(shard_folder, slide).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("status") != "complete":
        return None
    return tar_damage(tar_path(shard_folder, slide), index.get("tar"), full=verify)


def ends_crc32(path: str | Path, size: int) -> int:
    """CRC32 of a file's size and its first and last `TAR_ENDS_BYTES` (all of it when smaller)."""
    crc = zlib.crc32(str(size).encode())
    with open(path, "rb") as handle:
        crc = zlib.crc32(handle.read(TAR_ENDS_BYTES), crc)
        if size > TAR_ENDS_BYTES:
            handle.seek(max(TAR_ENDS_BYTES, size - TAR_ENDS_BYTES))
            crc = zlib.crc32(handle.read(TAR_ENDS_BYTES), crc)
    return crc


class _ShardFile:
    """The tar's file: counts the bytes written and their CRC32 on the way (no second read)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.size = 0
        self.crc32 = 0

    def write(self, data: bytes) -> int:
        written = self.handle.write(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.size += len(data)
        return written

    def tell(self) -> int:
        return self.handle.tell()

    def flush(self) -> None:
        self.handle.flush()

    def fileno(self) -> int:
        return self.handle.fileno()


class ShardWriter:
    """Write one slide's tiles to a tar shard, then its index.

    Use as a context manager; leaving the block without `finish`, on any exception (a full disk
    included), deletes the partial tar. Hold the slide's lock (`src.infra.locks`) while writing.

    Args:
        shard_folder: The settings' shard folder (created if needed).
        slide: The slide name.
        img_format: ``"jpg"`` or ``"png"``: the extension of the image members.
    """

    def __init__(self, shard_folder: str | Path, slide: str, img_format: str = "jpg"):
        self.folder = Path(shard_folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.slide = slide
        self.img_format = img_format
        self.locations: list[list[int]] = []
        index_path(self.folder, slide).unlink(missing_ok=True)  # now incomplete
        self._final = tar_path(self.folder, slide)
        self._pending = PendingFile(self._final)
        self._file: _ShardFile | None = _ShardFile(open(self._pending.path, "wb"))  # noqa: SIM115
        # ustar: plain 512-byte headers (no pax records), cheaper to write and read
        # typeshed's fileobj needs read/seek/close, which mode "w" never calls
        self._tar: tarfile.TarFile | None = tarfile.open(  # noqa: SIM115
            fileobj=self._file,  # type: ignore[call-overload]
            mode="w",
            format=tarfile.USTAR_FORMAT,
        )

    def add(self, image: bytes, loc_x: int, loc_y: int) -> None:
        """Append one encoded tile and its tile-centre location."""
        assert self._tar is not None, "ShardWriter is closed"
        key = f"{len(self.locations):06d}"
        meta = {"slide": self.slide, "loc_x": int(loc_x), "loc_y": int(loc_y)}
        self._add_member(f"{key}.{self.img_format}", image)
        self._add_member(f"{key}.json", json.dumps(meta).encode())
        self.locations.append([int(loc_x), int(loc_y)])

    def _add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]

    @property
    def tiles_written(self) -> int:
        """Tiles added so far."""
        return len(self.locations)

    def flush(self) -> None:
        """Push the tiles added so far to the partial file (for tests that interrupt a write)."""
        if self._file is not None:
            self._file.flush()

    def finish(self, settings: dict[str, Any], grid_tiles: int, **info: Any) -> dict[str, Any]:
        """Close the tar, move it into place and write the complete index (last).

        Args:
            settings: The tile settings, stored in the index.
            grid_tiles: Tiles in the grid before filtering.
            **info: More JSON-serialisable entries for the index (slide file fingerprint, mpp...).

        Returns:
            The index written.
        """
        assert self._tar is not None and self._file is not None, "ShardWriter is closed"
        self._tar.close()  # the end-of-archive blocks: the tar is complete
        self._tar = None
        shard_file, self._file = self._file, None
        with shard_file.handle as handle:
            handle.flush()
            os.fsync(handle.fileno())
        size, crc32 = shard_file.size, shard_file.crc32
        record = {"bytes": size, "crc32": crc32, "crc32_ends": ends_crc32(self._pending.path, size)}
        index = {
            "slide": self.slide,
            "num_tiles": len(self.locations),
            "locations": self.locations,
            "settings": settings,
            "status": "complete",
            "grid_tiles": int(grid_tiles),
            "tar": record,
            **info,
        }
        self._pending.commit(fsync=False)  # fsynced above; the index's write then flushes the folder's entries
        record_verified(self._final, crc32)  # the CRC of the bytes written: no need to read them back
        try:
            write_json_atomic(index_path(self.folder, self.slide), index, indent=None)
        except BaseException:
            self._final.unlink(missing_ok=True)  # never complete without its index: free the space
            raise
        return index

    def abort(self) -> None:
        """Close and delete the partial tar (the slide stays incomplete); never raises for a full disk."""
        self._tar = None  # closing it would write the end blocks: pointless, and fails on a full disk
        if self._file is not None:
            handle, self._file = self._file.handle, None
            with contextlib.suppress(OSError):
                handle.close()  # flushes first: fails on a full disk, but the descriptor is closed anyway
        self._pending.discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


def iter_shard(path: str | Path) -> Iterator[tuple[bytes, int, int]]:
    """Stream ``(image bytes, loc_x, loc_y)`` from a slide's tar in write order.

    Args:
        path: The ``{slide}.tar`` file.

    Raises:
        ValueError: A tile lacks its image or its JSON member.
    """
    pending: dict[str, dict[str, Any]] = {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition(".")
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            entry = pending.setdefault(key, {})
            if ext == "json":
                entry["meta"] = json.loads(data)
            elif ext in IMAGE_EXTENSIONS:
                entry["image"] = data
            if "meta" in entry and "image" in entry:
                del pending[key]
                yield (
                    entry["image"],
                    int(entry["meta"]["loc_x"]),
                    int(entry["meta"]["loc_y"]),
                )
    if pending:
        raise ValueError(f"{path}: incomplete tile(s) {sorted(pending)[:5]}")
