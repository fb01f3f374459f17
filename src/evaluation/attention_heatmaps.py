"""Attention heatmaps: a MIL model's per-tile attention (or scores) laid over the slide thumbnail.

Tile centres are in level-0 pixels (the bags' ``coords``); each tile paints the square it covers,
``patch_size_level0`` wide, on a grid at the thumbnail's scale. Pixels no tile covers stay transparent.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def attention_grid(
    coords: np.ndarray, values: np.ndarray, extent_px: float, shape: tuple[int, int], downsample: float
) -> np.ndarray:
    """Per-pixel value on a (height, width) grid at ``downsample`` level-0 px per pixel; NaN where no tile is.

    Args:
        coords: (n_tiles, 2) tile centres (x, y) in level-0 px.
        values: (n_tiles,) attention or score per tile.
        extent_px: Side of a tile in level-0 px.
        shape: (height, width) of the grid (the thumbnail's).
        downsample: Level-0 px per grid pixel.

    Where tiles overlap (``stride_div`` > 1) the later tile's value wins.
    """
    grid = np.full(shape, np.nan, dtype=np.float32)
    half = extent_px / 2
    for (x, y), value in zip(np.asarray(coords, float), np.asarray(values, float), strict=True):
        top, bottom = round((y - half) / downsample), round((y + half) / downsample)
        left, right = round((x - half) / downsample), round((x + half) / downsample)
        grid[max(top, 0) : max(bottom, top + 1), max(left, 0) : max(right, left + 1)] = value
    return grid


def save_attention_heatmap(
    thumbnail: np.ndarray,
    coords: np.ndarray,
    values: np.ndarray,
    extent_px: float,
    downsample: float,
    path: str | Path,
    title: str = "",
    cmap: str = "inferno",
    alpha: float = 0.6,
) -> Path:
    """Write the thumbnail with the per-tile values over it (and a colour bar); returns ``path``.

    Args:
        thumbnail: (height, width, 3) uint8 RGB thumbnail of the slide.
        coords: (n_tiles, 2) tile centres in level-0 px.
        values: (n_tiles,) attention or score per tile.
        extent_px: Tile side in level-0 px (the bag's ``patch_size_level0`` attribute).
        downsample: Level-0 px per thumbnail pixel.
        path: The PNG to write.
        title: Figure title (e.g. slide and prediction).
        cmap: Matplotlib colour map.
        alpha: Opacity of the overlay.
    """
    grid = attention_grid(coords, values, extent_px, thumbnail.shape[:2], downsample)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 6 * thumbnail.shape[0] / max(thumbnail.shape[1], 1)))
    axis.imshow(thumbnail)
    overlay = axis.imshow(np.ma.masked_invalid(grid), cmap=cmap, alpha=alpha)
    figure.colorbar(overlay, ax=axis, fraction=0.046, pad=0.04)
    axis.set_title(title)
    axis.axis("off")
    figure.savefig(path, dpi=100, bbox_inches="tight", format="png")
    plt.close(figure)
    return path
