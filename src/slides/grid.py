"""The tile grid over a slide, with Slideflow's geometry (`slide/wsi.py::_build_coord`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from src.slides.reader import SlideReader

_MAGNIFICATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]\s*$")
# Slideflow fails when the nearest level's magnification is off by more than 2 (e.g. 20x vs 17x)
MAX_MAGNIFICATION_ERROR = 2.0


@dataclass
class TileGrid:
    """Where the tiles of one slide are and how to read them.

    Attributes:
        tile_px: Output tile side in pixels.
        full_extract_px: Tile side in level-0 pixels.
        level: Pyramid level the tiles are read from.
        level_downsample: Downsample of `level`.
        extract_px: Tile side in pixels of `level` (resized to `tile_px` after reading).
        stride: Grid step in level-0 pixels.
        coords: ``(N, 2)`` int array of tile top-left ``(x, y)`` in level-0 pixels, row-major.
        locs: ``(N, 2)`` int array of tile centres (top-left + ``full_extract_px // 2``).
    """

    tile_px: int
    full_extract_px: int
    level: int
    level_downsample: float
    extract_px: int
    stride: int
    coords: np.ndarray
    locs: np.ndarray

    def __len__(self) -> int:
        return len(self.coords)


def parse_magnification(tile_um: float | str) -> float | None:
    """Return N for a magnification string ``"Nx"``, None for a size in microns.

    Raises:
        ValueError: `tile_um` is a string that is not of the form ``"20x"``.
    """
    if isinstance(tile_um, str):
        match = _MAGNIFICATION.match(tile_um)
        if match is None:
            raise ValueError(f"tile_um must be microns (e.g. 302) or a magnification like '20x', got {tile_um!r}")
        return float(match.group(1))
    return None


def tile_grid(
    reader: SlideReader,
    tile_px: int,
    tile_um: float | str,
    stride_div: int = 1,
    use_edge_tiles: bool = False,
) -> TileGrid:
    """Lay Slideflow's tile grid over a slide.

    With `tile_um` in microns, a tile covers ``int(tile_um / mpp)`` level-0 pixels and is read
    from the best level for ``full_extract_px / tile_px``. With a magnification ``"Nx"``, the level
    whose magnification ``10 / (downsample * mpp)`` is nearest N is read at `tile_px` directly.

    Args:
        reader: An open slide.
        tile_px: Output tile side in pixels.
        tile_um: Tile side in microns, or a magnification string such as ``"20x"``.
        stride_div: Grid step = tile side / stride_div (2 means 50 % overlap).
        use_edge_tiles: Keep tiles that run over the right/bottom edge (padded white).

    Returns:
        The `TileGrid`, possibly with zero tiles when the slide is smaller than one tile.

    Raises:
        ValueError: Bad tile size, stride, or no level within 2x of the magnification asked.
    """
    if tile_px <= 0 or stride_div < 1:
        raise ValueError(f"tile_px must be > 0 and stride_div >= 1, got {tile_px}, {stride_div}")
    magnification = parse_magnification(tile_um)
    if magnification is None:
        if float(tile_um) <= 0:
            raise ValueError(f"tile_um must be > 0, got {tile_um}")
        full_extract_px = int(float(tile_um) / reader.mpp)
        if full_extract_px < 1:
            raise ValueError(f"tile_um={tile_um} is below one pixel at mpp={reader.mpp}")
        level = reader.best_level_for_downsample(full_extract_px / tile_px)
        level_downsample = reader.level_downsamples[level]
        extract_px = int(full_extract_px // level_downsample)
    else:
        level_mags = np.array([10.0 / (ds * reader.mpp) for ds in reader.level_downsamples])
        level = int(np.argmin(np.abs(level_mags - magnification)))
        if abs(level_mags[level] - magnification) > MAX_MAGNIFICATION_ERROR:
            raise ValueError(
                f"Slide {reader.path} has no level near {tile_um}: level magnifications are "
                f"{[round(float(m), 2) for m in level_mags]}"
            )
        level_downsample = reader.level_downsamples[level]
        extract_px = tile_px
        full_extract_px = int(tile_px * level_downsample)
    stride = max(1, round(full_extract_px / stride_div))
    width, height = reader.dimensions
    margin = 0 if use_edge_tiles else full_extract_px
    xs = np.arange(0, width + 1 - margin, stride)
    ys = np.arange(0, height + 1 - margin, stride)
    if use_edge_tiles:
        xs, ys = xs[xs < width], ys[ys < height]
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    coords = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.int64)
    return TileGrid(
        tile_px=int(tile_px),
        full_extract_px=full_extract_px,
        level=level,
        level_downsample=float(level_downsample),
        extract_px=extract_px,
        stride=stride,
        coords=coords.reshape(-1, 2),
        locs=(coords + full_extract_px // 2).reshape(-1, 2),
    )
