"""`SlideReader` backed by tiffslide (pure Python: SVS, generic/Philips TIFF, QPTIFF, NDPI, Leica SCN, Ventana BIF)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from src.slides.jpeg_tiles import JpegTiledLevel, pick_reduction
from src.slides.mpp import resolve_mpp
from src.slides.reader import SlideError, SlideReader, slide_name
from src.slides.tiff_check import quiet_tifffile, tiff_damage, truncated_message

log = logging.getLogger(__name__)


class TiffSlideReader(SlideReader):
    """Slide reader using `tiffslide.TiffSlide`.

    `read_tile` decodes the stored JPEG tiles of a level directly (see `src.slides.jpeg_tiles`)
    when the level is JPEG-tiled and the direct decoder agrees with tifffile's on it; other
    levels (JPEG 2000, LZW, stripped NDPI...) go through tiffslide's `read_region`.

    Args:
        path: The slide file.
        mpp_override: Microns per pixel for a file that records none.
        mpp: Microns per pixel that replaces the file's own (a per-slide annotation value).
        fast_jpeg: Allow the direct JPEG path (False: always tiffslide's `read_region`).

    Raises:
        SlideError: Missing or unreadable file, or no usable MPP and no override.
    """

    # What tiffslide recognises (aperio, leica, ventana, hamamatsu, philips) plus generic tiled TIFF,
    # which includes Akoya/PerkinElmer QPTIFF (a pyramidal TIFF under another extension).
    extensions: ClassVar[frozenset[str]] = frozenset({"svs", "tif", "tiff", "qptiff", "ndpi", "scn", "bif"})

    def __init__(
        self, path: str | Path, mpp_override: float | None = None, fast_jpeg: bool = True, mpp: float | None = None
    ) -> None:
        import tiffslide

        self.fast_jpeg = fast_jpeg
        self._fd: int | None = None
        self._jpeg_levels: dict[int, JpegTiledLevel | None] = {}
        self._jpeg_lock = threading.Lock()
        self.path = Path(path)
        self.name = slide_name(self.path)
        if not self.path.is_file():
            raise SlideError(f"Slide file not found: {self.path}")
        with quiet_tifffile() as messages:  # a truncated file: tifffile logs, then fails or opens fewer levels
            try:
                self._slide = tiffslide.TiffSlide(self.path)
                raw_properties = dict(self._slide.properties)
                self.dimensions = tuple(int(v) for v in self._slide.dimensions)  # type: ignore[assignment]
                self.level_count = int(self._slide.level_count)
                self.level_dimensions = [(int(w), int(h)) for w, h in self._slide.level_dimensions]
                self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
                damage = tiff_damage(self.path, self._slide.ts_tifffile, messages)
            except Exception as err:  # tifffile raises many types for corrupt files
                self.close()
                raise SlideError(_open_error(self.path, err, messages)) from err
        if damage is not None:
            self.close()
            raise SlideError(truncated_message(self.path, damage))
        for message in messages:  # a whole file that tifffile still had something to say about
            log.warning("%s: tifffile: %s", self.path, message)
        self.properties = {k: str(v) for k, v in raw_properties.items() if v is not None}
        self.mpp = resolve_mpp(self.path, raw_properties, mpp_override, mpp)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read ``size`` pixels of `level` at level-0 `location`; outside the slide is white."""
        x, y = int(location[0]), int(location[1])
        width, height = int(size[0]), int(size[1])
        downsample = self.level_downsamples[level]
        level_w, level_h = self.level_dimensions[level]
        # Clip the request to the level, read the inside, paste it on white.
        lx0, ly0 = x / downsample, y / downsample
        cx0, cy0 = max(0, int(np.floor(lx0))), max(0, int(np.floor(ly0)))
        cx1 = min(level_w, int(np.floor(lx0)) + width)
        cy1 = min(level_h, int(np.floor(ly0)) + height)
        inside = cx0 == int(np.floor(lx0)) and cy0 == int(np.floor(ly0))
        inside = inside and cx1 - cx0 == width and cy1 - cy0 == height
        try:
            if inside:
                region = self._slide.read_region((x, y), level, (width, height), as_array=True, padding=False)
                return _to_rgb(region)
            out = np.full((height, width, 3), 255, np.uint8)
            if cx1 <= cx0 or cy1 <= cy0:
                return out
            region = self._slide.read_region(
                (round(cx0 * downsample), round(cy0 * downsample)),
                level,
                (cx1 - cx0, cy1 - cy0),
                as_array=True,
                padding=False,
            )
        except Exception as err:
            raise SlideError(
                f"Cannot read region {location} level {level} size {size} of slide {self.path}: {err}"
            ) from err
        ox, oy = cx0 - int(np.floor(lx0)), cy0 - int(np.floor(ly0))
        region = _to_rgb(region)
        out[oy : oy + region.shape[0], ox : ox + region.shape[1]] = region
        return out

    def read_tile(self, location: tuple[int, int], level: int, extract_px: int, tile_px: int) -> np.ndarray:
        """Read a square tile; direct JPEG decoding (in the DCT domain when it shrinks) when possible."""
        jpeg = self._jpeg_level(level) if self.fast_jpeg else None
        if jpeg is None:
            return super().read_tile(location, level, extract_px, tile_px)
        downsample = self.level_downsamples[level]
        level_x, level_y = int(location[0] / downsample), int(location[1] / downsample)  # as tiffslide
        reduce = pick_reduction(level_x, level_y, extract_px, tile_px, jpeg.tile_w, jpeg.tile_h)
        side = extract_px // reduce
        try:
            tile = jpeg.read(level_x // reduce, level_y // reduce, side, side, reduce)
        except Exception as err:
            raise SlideError(f"Cannot read tile {location} level {level} of slide {self.path}: {err}") from err
        if side != tile_px:
            tile = cv2.resize(tile, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
        return tile

    def _jpeg_level(self, level: int) -> JpegTiledLevel | None:
        """The direct JPEG reader of `level`, or None when the level cannot use it (checked once)."""
        if level in self._jpeg_levels:
            return self._jpeg_levels[level]
        with self._jpeg_lock:
            if level not in self._jpeg_levels:
                self._jpeg_levels[level] = self._open_jpeg_level(level)
        return self._jpeg_levels[level]

    def _open_jpeg_level(self, level: int) -> JpegTiledLevel | None:
        try:
            tif = self._slide.ts_tifffile
            series = tif.series[int(self._slide.properties.get("tiffslide.series-index", 0))]
            page = series.levels[level].keyframe
            if (page.imagewidth, page.imagelength) != self.level_dimensions[level]:
                return None
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            jpeg = JpegTiledLevel(self._fd, page)
        except Exception:
            return None
        return jpeg if jpeg.probe(page) else None

    def close(self) -> None:
        """Close the underlying tiffslide handle."""
        slide = getattr(self, "_slide", None)
        if slide is not None:
            slide.close()
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None


def _open_error(path: Path, err: Exception, messages: list[str]) -> str:
    """Why a slide file cannot be opened: cut short, or corrupt in another way (with what tifffile said)."""
    damage = tiff_damage(path, None, messages)
    if damage is not None:
        return truncated_message(path, damage)
    said = f"; tifffile: {messages[0]}" if messages else ""
    return f"Cannot open slide {path}: it is corrupt, or not a slide tiffslide reads ({err}{said})"


def _to_rgb(region: np.ndarray) -> np.ndarray:
    """Return an ``HxWx3`` uint8 array from a gray, RGB or RGBA array."""
    if region.ndim == 2:
        region = np.repeat(region[:, :, None], 3, axis=2)
    if region.shape[2] == 4:
        region = region[:, :, :3]
    return np.ascontiguousarray(region, dtype=np.uint8)
