"""Write an image as an Aperio-style SVS pyramid that tiffslide (and OpenSlide) can read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile

MIN_LEVEL_SIDE_PX = 64  # a downsampled level is written only when its smaller side reaches this
THUMBNAIL_PX = 512


def aperio_description(width: int, height: int, mpp: float, tile: int, quality: int) -> str:
    """Return an Aperio ImageDescription (``|MPP = 0.5|AppMag = 20`` for mpp 0.5)."""
    magnification = 10.0 / mpp
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({tile}x{tile}) JPEG/RGB Q={quality}|MPP = {mpp:g}|AppMag = {magnification:g}"
    )


def _iter_tiles(image: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Yield ``tile x tile`` pieces row-major, the last row/column padded white."""
    height, width = image.shape[:2]
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            piece = image[y : y + tile, x : x + tile]
            if piece.shape[:2] != (tile, tile):
                padded = np.full((tile, tile, 3), 255, np.uint8)
                padded[: piece.shape[0], : piece.shape[1]] = piece
                piece = padded
            yield np.ascontiguousarray(piece)


def write_svs(
    path: str | Path,
    image: np.ndarray,
    mpp: float,
    tile: int = 256,
    downsamples: Sequence[int] = (4, 16),
    quality: int = 90,
) -> None:
    """Write an RGB image as a tiled, JPEG-compressed Aperio SVS.

    Page layout follows real Aperio files, which is what tifffile's SVS parser (and so
    tiffslide) expects: level 0 (tiled), a stripped thumbnail, then one tiled page per
    downsample (only those whose smaller side is at least 64 px). Resolution tags carry the
    MPP too. Level 0 is handed to tifffile tile by tile, so a later version can stream it
    from a lazy source instead of one array.

    Args:
        path: Output ``.svs`` file.
        image: ``(H, W, 3)`` uint8 RGB level-0 image.
        mpp: Microns per level-0 pixel.
        tile: Stored tile side in pixels (multiple of 16).
        downsamples: Integer downsamples of the lower pyramid levels.
        quality: JPEG quality.
    """
    height, width = image.shape[:2]
    description = aperio_description(width, height, mpp, tile, quality)
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}}
    common = {"photometric": "rgb", "metadata": None, "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            _iter_tiles(image, tile),
            shape=image.shape,
            dtype=np.uint8,
            tile=(tile, tile),
            description=description,
            resolution=(1e4 / mpp, 1e4 / mpp),
            **jpeg,
            **common,
        )
        scale = max(1.0, max(width, height) / THUMBNAIL_PX)
        thumb_size = (max(1, int(width / scale)), max(1, int(height / scale)))
        thumbnail = cv2.resize(image, thumb_size, interpolation=cv2.INTER_AREA)
        tif.write(
            thumbnail,
            description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> "
            f"{thumb_size[0]}x{thumb_size[1]} - |MPP = {mpp:g}",
            resolution=(1e4 / (mpp * scale), 1e4 / (mpp * scale)),
            **jpeg,
            **common,
        )
        for downsample in downsamples:
            size = (width // downsample, height // downsample)
            if min(size) < MIN_LEVEL_SIDE_PX:
                continue
            level = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            tif.write(
                level,
                tile=(tile, tile),
                description=description,
                resolution=(1e4 / (mpp * downsample), 1e4 / (mpp * downsample)),
                **jpeg,
                **common,
            )
