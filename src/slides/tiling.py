"""How a slide is cut into tiles: the tile plan (grid and slide-level QC mask) and each tile's encoding.

Extraction, the live tile source and predict.py cut slides with these, so their tiles are the same.
"""

from __future__ import annotations

import cv2
import numpy as np

from src.slides.grid import TileGrid, tile_grid
from src.slides.reader import SlideReader
from src.slides.tile_settings import TileSettings
from src.slides.tiles import qc_keep


def tile_plan(reader: SlideReader, settings: TileSettings) -> tuple[TileGrid, np.ndarray]:
    """The tile grid of ``reader``'s slide for ``settings`` and which grid tiles pass the slide-level QC mask."""
    grid = tile_grid(
        reader, settings.tile_px, settings.tile_um, stride_div=settings.stride_div,
        use_edge_tiles=settings.use_edge_tiles,
    )  # fmt: skip
    return grid, qc_keep(reader, grid, settings.tissue)


def encode_tile(tile: np.ndarray, img_format: str = "jpg", quality: int = 95) -> bytes:
    """Encode an RGB uint8 tile as JPEG (at `quality`) or PNG bytes."""
    bgr = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
    if img_format == "png":
        ok, buffer = cv2.imencode(".png", bgr)
    else:
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {tile.shape} tile as {img_format}")
    return buffer.tobytes()
