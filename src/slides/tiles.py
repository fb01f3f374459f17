"""Read the tiles of a grid one at a time, resized and filtered for tissue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
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


@dataclass(frozen=True)
class TissueFilter:
    """Slideflow's tissue filters (defaults from `slide/utils.py` and `WSI.qc`).

    Attributes:
        qc: Slide-level mask: ``"otsu"`` or None.
        filter_threshold: Drop a tile whose mean background-mask value is above this.
        grayspace_fraction: Drop a tile whose gray-pixel fraction is above this (1 = off).
        grayspace_threshold: HSV saturation (0-1) below which a pixel is gray.
        whitespace_fraction: Drop a tile whose white-pixel fraction is above this (1 = off).
        whitespace_threshold: RGB mean (0-255) above which a pixel is white.
    """

    qc: str | None = "otsu"
    filter_threshold: float = 0.6
    grayspace_fraction: float = 0.6
    grayspace_threshold: float = 0.05
    whitespace_fraction: float = 1.0
    whitespace_threshold: float = 230

    def __post_init__(self) -> None:
        if self.qc not in QC_METHODS:
            raise ValueError(f"qc must be one of {QC_METHODS}, got {self.qc!r}")

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
    """Read grid tile `index` at `grid.level` and resize it to ``tile_px x tile_px`` RGB."""
    x, y = (int(v) for v in grid.coords[index])
    tile = reader.read_region((x, y), grid.level, (grid.extract_px, grid.extract_px))
    if grid.extract_px != grid.tile_px:
        tile = cv2.resize(tile, (grid.tile_px, grid.tile_px), interpolation=cv2.INTER_AREA)
    return tile


def iter_tiles(
    reader: SlideReader, grid: TileGrid, tissue: TissueFilter | None = None
) -> Iterator[tuple[np.ndarray, int, int]]:
    """Yield ``(tile, loc_x, loc_y)`` for every grid tile that passes the tissue filters.

    Tiles are read one at a time in grid order (row-major), so memory stays at one tile.

    Args:
        reader: An open slide.
        grid: Its tile grid.
        tissue: Filters to apply; None keeps every tile.
    """
    tissue = tissue or TissueFilter(qc=None, grayspace_fraction=1.0, whitespace_fraction=1.0)
    keep = qc_keep(reader, grid, tissue)
    for index in np.flatnonzero(keep):
        tile = read_tile(reader, grid, int(index))
        if tissue.keeps(tile):
            loc_x, loc_y = (int(v) for v in grid.locs[index])
            yield tile, loc_x, loc_y
