"""The shard format: one WebDataset-compatible tar per slide plus a JSON index.

``{slide}.tar`` holds, for tile i in write order, ``{i:06d}.jpg`` (or ``.png``) and
``{i:06d}.json`` = ``{"slide", "loc_x", "loc_y"}`` (tile centre, level-0 px). Labels are never
stored: one extraction serves every outcome and split. The tar is written as
``{slide}.tar.partial`` and renamed when complete; ``{slide}.index.json`` is written after it,
atomically, with ``"status": "complete"`` and the slide file's fingerprint; a tar without a
complete index, or whose slide file has since been replaced, is unfinished.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from src.extraction.settings import TileSettings
from src.slides.mpp import MppChoice

INDEX_SUFFIX = ".index.json"
PARTIAL_SUFFIX = ".partial"
IMAGE_EXTENSIONS = ("jpg", "png")
FINGERPRINT_BYTES = 1 << 16  # hashed at each end of a slide file


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


def read_index(
    shard_folder: str | Path, slide: str, slide_path: str | Path | None = None, mpp: MppChoice | None = None
) -> dict[str, Any] | None:
    """Return a slide's index if the slide is completely extracted, else None.

    None when the index or the tar is missing, the index is unreadable or not marked
    complete, its location count disagrees with ``num_tiles``, (with `slide_path`, when
    that file exists) the slide file is not the one the shard was extracted from, or (with
    `mpp`) the shard was extracted at another MPP than `mpp` gives the slide now.

    Args:
        shard_folder: The settings' shard folder.
        slide: The slide name.
        slide_path: The slide file to check the index's fingerprint against; None (or a file
            that is gone) skips the check, so shards outlive their slides.
        mpp: This run's MPP choice for the slide (column value, override); None skips the check.
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
    if not tar_path(shard_folder, slide).is_file():
        return None
    replaced = slide_path is not None and Path(slide_path).exists()
    if replaced and not same_slide_file(index.get("slide_file"), slide_path):
        return None
    if mpp is not None and not mpp.matches(index):
        return None
    return index


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and `os.replace`."""
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(tmp, "w") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Write one slide's tiles to a tar shard, then its index.

    Use as a context manager; leaving the block without `finish` removes the partial tar.

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
        self._tmp = self._final.with_name(self._final.name + PARTIAL_SUFFIX)
        # ustar: plain 512-byte headers (no pax records), cheaper to write and read
        self._tar: tarfile.TarFile | None = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

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
        if self._tar is not None:
            self._tar.fileobj.flush()  # type: ignore[union-attr]

    def finish(self, settings: dict[str, Any], grid_tiles: int, **info: Any) -> dict[str, Any]:
        """Close the tar, move it into place and write the complete index (last).

        Args:
            settings: The tile settings, stored in the index.
            grid_tiles: Tiles in the grid before filtering.
            **info: More JSON-serialisable entries for the index (slide file fingerprint, mpp...).

        Returns:
            The index written.
        """
        assert self._tar is not None, "ShardWriter is closed"
        self._tar.close()
        self._tar = None
        with open(self._tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self._final)
        index = {
            "slide": self.slide,
            "num_tiles": len(self.locations),
            "locations": self.locations,
            "settings": settings,
            "status": "complete",
            "grid_tiles": int(grid_tiles),
            **info,
        }
        write_json_atomic(index_path(self.folder, self.slide), index)
        return index

    def abort(self) -> None:
        """Close and delete the partial tar (the slide stays incomplete)."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        self._tmp.unlink(missing_ok=True)

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
