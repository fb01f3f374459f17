"""Write Aperio-style SVS pyramids that tiffslide (and OpenSlide) can read, from an array or streamed.

Page layout follows real Aperio files, which is what tifffile's SVS parser (and so tiffslide)
expects: level 0 (tiled), a stripped thumbnail, then one tiled page per downsample. Every level
is handed to tifffile one stored tile at a time, so `write_svs_tiles` can write a slide far larger
than memory from a function that renders tiles on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

MIN_LEVEL_SIDE_PX = 64  # a downsampled level is written only when its smaller side reaches this
THUMBNAIL_PX = 512
# Aperio's JPEG 2000 compression codes (YCbCr and RGB); tifffile encodes both with OpenJPEG.
COMPRESSIONS = {"jpeg": 7, "jpeg2000": 33003, "jpeg2000_rgb": 33005}
BIGTIFF_BYTES = 2**31  # switch to BigTIFF when a level could exceed this many encoded bytes

# (downsample, row, col) -> the (tile, tile, 3) uint8 RGB stored tile of that level
TileRenderer = Callable[[int, int, int], np.ndarray]


def aperio_description(width: int, height: int, mpp: float, tile: int, quality: int, codec: str = "JPEG") -> str:
    """Return an Aperio ImageDescription (``|MPP = 0.5|AppMag = 20`` for mpp 0.5)."""
    magnification = 10.0 / mpp
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({tile}x{tile}) {codec}/RGB Q={quality}|MPP = {mpp:g}|AppMag = {magnification:g}"
    )


def level_sizes(width: int, height: int, downsamples: Sequence[int]) -> list[tuple[int, tuple[int, int]]]:
    """``[(downsample, (w, h))]`` of every level written: 1, then each downsample whose smaller side is >= 64 px."""
    sizes = [(1, (width, height))]
    for downsample in downsamples:
        size = (width // downsample, height // downsample)
        if min(size) >= MIN_LEVEL_SIDE_PX:
            sizes.append((int(downsample), size))
    return sizes


def _iter_level(render: TileRenderer, downsample: int, size: tuple[int, int], tile: int) -> Iterator[np.ndarray]:
    """Yield a level's stored tiles row-major (tifffile's order)."""
    for row in range(-(-size[1] // tile)):
        for col in range(-(-size[0] // tile)):
            yield np.ascontiguousarray(render(downsample, row, col), dtype=np.uint8)


def write_svs_tiles(
    path: str | Path,
    size: tuple[int, int],
    mpp: float,
    render: TileRenderer,
    thumbnail: np.ndarray,
    tile: int = 256,
    downsamples: Sequence[int] = (4, 16),
    quality: int = 90,
    compression: str = "jpeg",
) -> None:
    """Write an SVS whose stored tiles are rendered one at a time (memory: one tile).

    Args:
        path: Output ``.svs`` file.
        size: Level-0 ``(width, height)``.
        mpp: Microns per level-0 pixel.
        render: ``render(downsample, row, col)`` returns stored tile ``(row, col)`` of the level
            at that downsample, ``tile x tile`` RGB (pad the right/bottom edge, e.g. white).
        thumbnail: The small RGB image stored as Aperio's thumbnail page.
        tile: Stored tile side in pixels (multiple of 16).
        downsamples: Integer downsamples of the lower pyramid levels.
        quality: JPEG quality (JPEG 2000 is written lossless).
        compression: ``"jpeg"``, ``"jpeg2000"`` (Aperio 33003) or ``"jpeg2000_rgb"`` (33005).
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
    width, height = size
    codec = "JPEG" if compression == "jpeg" else "J2K"
    description = aperio_description(width, height, mpp, tile, quality, codec)
    codec_args: dict[str, Any] = {"compression": COMPRESSIONS[compression]}
    if compression == "jpeg":
        codec_args["compressionargs"] = {"level": quality}
    common: dict[str, Any] = {"photometric": "rgb", "metadata": None, "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > BIGTIFF_BYTES) as tif:
        for index, (downsample, level_size) in enumerate(level_sizes(width, height, downsamples)):
            tif.write(
                _iter_level(render, downsample, level_size, tile),
                shape=(level_size[1], level_size[0], 3),
                dtype=np.uint8,
                tile=(tile, tile),
                description=description,
                resolution=(1e4 / (mpp * downsample), 1e4 / (mpp * downsample)),
                **codec_args,
                **common,
            )
            if index == 0:
                thumb_h, thumb_w = thumbnail.shape[:2]
                scale = width / thumb_w
                tif.write(
                    np.ascontiguousarray(thumbnail, dtype=np.uint8),
                    description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> "
                    f"{thumb_w}x{thumb_h} - |MPP = {mpp:g}",
                    resolution=(1e4 / (mpp * scale), 1e4 / (mpp * scale)),
                    compression="jpeg",
                    compressionargs={"level": quality},
                    **common,
                )


def write_svs(
    path: str | Path,
    image: np.ndarray,
    mpp: float,
    tile: int = 256,
    downsamples: Sequence[int] = (4, 16),
    quality: int = 90,
    compression: str = "jpeg",
) -> None:
    """Write an RGB image as a tiled Aperio SVS (JPEG, or JPEG 2000 like Aperio's 33003).

    Lower levels are the image downsized with area interpolation; levels whose smaller side
    would be under 64 px are left out. Resolution tags carry the MPP too.

    Args:
        path: Output ``.svs`` file.
        image: ``(H, W, 3)`` uint8 RGB level-0 image.
        mpp: Microns per level-0 pixel.
        tile: Stored tile side in pixels (multiple of 16).
        downsamples: Integer downsamples of the lower pyramid levels.
        quality: JPEG quality.
        compression: ``"jpeg"``, ``"jpeg2000"`` or ``"jpeg2000_rgb"``.
    """
    height, width = image.shape[:2]
    levels = {
        downsample: image if downsample == 1 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        for downsample, size in level_sizes(width, height, downsamples)
    }

    def render(downsample: int, row: int, col: int) -> np.ndarray:
        piece = levels[downsample][row * tile : (row + 1) * tile, col * tile : (col + 1) * tile]
        if piece.shape[:2] != (tile, tile):
            padded = np.full((tile, tile, 3), 255, np.uint8)
            padded[: piece.shape[0], : piece.shape[1]] = piece
            piece = padded
        return piece

    scale = max(1.0, max(width, height) / THUMBNAIL_PX)
    thumb_size = (max(1, int(width / scale)), max(1, int(height / scale)))
    thumbnail = cv2.resize(image, thumb_size, interpolation=cv2.INTER_AREA)
    write_svs_tiles(path, (width, height), mpp, render, thumbnail, tile, downsamples, quality, compression)
