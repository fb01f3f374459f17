"""Read the tiles of a grid one at a time, resized and filtered for tissue."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from src.slides.grid import TileGrid
from src.slides.reader import SlideReader
from src.slides.tissue import (
    grayspace_fraction,
    mask_fraction,
    otsu_mask,
    whitespace_fraction,
)

QC_METHODS = (None, "otsu")
CHUNK_TILES = 16  # grid tiles handed to a thread at once (neighbours share stored tiles)
T = TypeVar("T")


@dataclass(frozen=True)
class TissueFilter:
    """Slideflow's tissue filters (defaults from `slide/utils.py` and `WSI.qc`): the tissue keys of ``tiles``.

    ``qc`` is read case-insensitively (``"none"``, ``"null"`` and ``""`` mean None) and the thresholds are
    stored as floats, so equal filters compare (and hash into a shard-folder key) equal.

    Attributes:
        qc: Slide-level mask: ``"otsu"`` or None.
        filter_threshold: Drop a tile whose mean background-mask value is above this.
        grayspace_fraction: Drop a tile whose gray-pixel fraction is above this (1 = off).
        grayspace_threshold: HSV saturation (0-1) below which a pixel is gray.
        whitespace_fraction: Drop a tile whose white-pixel fraction is above this (1 = off).
        whitespace_threshold: RGB mean (0-255) above which a pixel is white.

    Raises:
        ValueError: ``qc`` is not one of :data:`QC_METHODS` (the message names ``tiles.qc``).
    """

    qc: str | None = "otsu"
    filter_threshold: float = 0.6
    grayspace_fraction: float = 0.6
    grayspace_threshold: float = 0.05
    whitespace_fraction: float = 1.0
    whitespace_threshold: float = 230.0

    def __post_init__(self) -> None:
        qc = self.qc.lower() if isinstance(self.qc, str) else self.qc
        object.__setattr__(self, "qc", None if qc in ("none", "null", "") else qc)
        if self.qc not in QC_METHODS:
            raise ValueError(f"tiles.qc must be one of {QC_METHODS}, got {self.qc!r}")
        for name in (
            "filter_threshold",
            "grayspace_fraction",
            "grayspace_threshold",
            "whitespace_fraction",
            "whitespace_threshold",
        ):
            object.__setattr__(self, name, float(getattr(self, name)))

    def keeps(self, tile: np.ndarray) -> bool:
        """Return whether a tile passes the grayspace and whitespace filters."""
        if self.grayspace_fraction < 1 and (
            grayspace_fraction(tile, self.grayspace_threshold) > self.grayspace_fraction
        ):
            return False
        return not (
            self.whitespace_fraction < 1
            and whitespace_fraction(tile, self.whitespace_threshold) > self.whitespace_fraction
        )


def qc_keep(reader: SlideReader, grid: TileGrid, tissue: TissueFilter) -> np.ndarray:
    """Boolean ``(N,)`` array: which grid tiles survive the slide-level QC mask."""
    if tissue.qc is None or len(grid) == 0:
        return np.ones(len(grid), dtype=bool)
    mask, downsample = otsu_mask(reader)
    fraction = mask_fraction(mask, downsample, grid.coords, grid.full_extract_px)
    # NaN (no footprint) is not > threshold, so it keeps the tile, as in Slideflow
    return ~(fraction > tissue.filter_threshold)


def read_tile(reader: SlideReader, grid: TileGrid, index: int) -> np.ndarray:
    """Read grid tile `index` at `grid.level`, resized to ``tile_px x tile_px`` RGB."""
    x, y = (int(v) for v in grid.coords[index])
    return reader.read_tile((x, y), grid.level, grid.extract_px, grid.tile_px)


def iter_tiles(
    reader: SlideReader,
    grid: TileGrid,
    tissue: TissueFilter | None = None,
    transform: Callable[[np.ndarray], Any] | None = None,
    threads: int = 1,
    keep: np.ndarray | None = None,
) -> Iterator[tuple[Any, int, int]]:
    """Yield ``(tile, loc_x, loc_y)`` for every grid tile that passes the tissue filters, in grid order.

    Tiles are read in row-major chunks of 16; with ``threads > 1`` chunks are read, filtered and
    transformed in a thread pool (the JPEG decoder, filters and encoder release the GIL) with at
    most ``4 * threads`` chunks in flight, and still yielded in grid order. Memory stays at a few
    chunks of tiles whatever the slide size.

    Args:
        reader: An open slide (its `read_tile` must be thread-safe when ``threads > 1``).
        grid: Its tile grid.
        tissue: Filters to apply; None keeps every tile.
        transform: Applied to each kept tile inside the worker thread (e.g. JPEG encoding);
            its result is yielded instead of the array.
        threads: Threads reading tiles.
        keep: Precomputed slide-level QC result (``qc_keep``); None computes it.
    """
    tissue = tissue or TissueFilter(qc=None, grayspace_fraction=1.0, whitespace_fraction=1.0)
    if keep is None:
        keep = qc_keep(reader, grid, tissue)
    candidates = np.flatnonzero(keep)
    chunks = [candidates[i : i + CHUNK_TILES] for i in range(0, len(candidates), CHUNK_TILES)]

    def work(chunk: np.ndarray) -> list[tuple[Any, int, int]]:
        out = []
        for index in chunk:
            tile = read_tile(reader, grid, int(index))
            if tissue.keeps(tile):
                loc_x, loc_y = (int(v) for v in grid.locs[index])
                out.append((transform(tile) if transform else tile, loc_x, loc_y))
        return out

    for kept in ordered_map(work, chunks, threads):
        yield from kept


def ordered_map(fn: Callable[[Any], T], items: Iterable[Any], threads: int, ahead: int = 4) -> Iterator[T]:
    """``map(fn, items)`` on `threads` threads, in order, with at most ``ahead * threads`` pending."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="tiles") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
