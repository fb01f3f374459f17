"""The slide reader interface every backend implements, and `open_slide`.

A backend subclasses `SlideReader`, fills the attributes in its constructor and implements
`read_region` and `close`; everything else (best level, tile reads, thumbnail, context manager)
is shared. A backend may override `read_tile` with a faster path (the tiffslide backend decodes
stored JPEG tiles directly, see `src.slides.jpeg_tiles`).

Adding a backend is one new file. For OpenSlide, ``src/slides/openslide_backend.py``::

    from pathlib import Path

    import numpy as np
    import openslide

    from src.slides.reader import SlideError, SlideReader, slide_name
    from src.slides.tiffslide_backend import _resolve_mpp


    class OpenSlideReader(SlideReader):
        def __init__(self, path, mpp_override=None):
            self.path, self.name = Path(path), slide_name(path)
            try:
                self._slide = openslide.OpenSlide(str(self.path))
            except Exception as err:
                raise SlideError(f"Cannot open slide {self.path}: {err}") from err
            self.dimensions = self._slide.dimensions
            self.level_count = self._slide.level_count
            self.level_dimensions = list(self._slide.level_dimensions)
            self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
            self.properties = dict(self._slide.properties)
            self.mpp = _resolve_mpp(self.path, self.properties, mpp_override)

        def read_region(self, location, level, size):
            rgba = np.asarray(self._slide.read_region(location, level, size))
            rgb = rgba[:, :, :3].copy()
            rgb[rgba[:, :, 3] == 0] = 255  # OpenSlide marks outside/empty as transparent
            return rgb

        def close(self):
            self._slide.close()

then pick it with ``open_slide(path, backend="src.slides.openslide_backend.OpenSlideReader")``,
or ``backend=...`` in ``conf/extract.yaml`` for ``python -m src.extraction``. Add a test that
opens ``../shared/data/slides/cmu-1-small-region.svs`` and compares a region with tiffslide's.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

import cv2
import numpy as np

BAND_BYTES = 32 << 20  # level pixels read at once when a whole level is streamed


class SlideError(RuntimeError):
    """A slide cannot be opened or used; the message always names the slide path."""


class SlideReader(ABC):
    """Read-only access to a whole-slide image pyramid.

    Attributes:
        path: The slide file.
        name: The file name without its extension (``"TCGA-01 (a)"`` for ``"TCGA-01 (a).svs"``).
        mpp: Microns per level-0 pixel.
        dimensions: Level-0 ``(width, height)`` in pixels.
        level_count: Number of pyramid levels.
        level_dimensions: ``(width, height)`` of every level.
        level_downsamples: Downsample of every level relative to level 0.
        properties: Vendor properties as strings.
    """

    path: Path
    name: str
    mpp: float
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    properties: dict[str, str]

    @abstractmethod
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read a region of one pyramid level.

        Args:
            location: Top-left ``(x, y)`` in level-0 pixels.
            level: Pyramid level to read from.
            size: ``(width, height)`` in pixels of `level`. Parts outside the slide are white.

        Returns:
            An ``(height, width, 3)`` uint8 RGB array.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the file handle."""

    def best_level_for_downsample(self, downsample: float) -> int:
        """Return the level with the largest downsample not above `downsample`.

        A relative tolerance of 1e-3 absorbs rounding in stored level sizes (4.0 vs 4.0016).
        """
        best = 0
        for level, level_downsample in enumerate(self.level_downsamples):
            if level_downsample <= downsample * (1 + 1e-3):
                best = level
        return best

    def read_tile(self, location: tuple[int, int], level: int, extract_px: int, tile_px: int) -> np.ndarray:
        """Read a square tile: ``extract_px`` pixels of `level` at level-0 `location`, resized to `tile_px`.

        The default reads the region and resizes it with area interpolation; backends may
        override it with something faster that gives (nearly) the same pixels.

        Returns:
            A ``(tile_px, tile_px, 3)`` uint8 RGB array; parts outside the slide are white.
        """
        tile = self.read_region(location, level, (extract_px, extract_px))
        if extract_px != tile_px:
            tile = cv2.resize(tile, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
        return tile

    def get_thumbnail(self, max_size: int) -> np.ndarray:
        """Return an RGB uint8 thumbnail whose longest side is at most `max_size` pixels.

        Reads the smallest level that is still at least as large as the thumbnail, band by band,
        and downsizes it with area interpolation.
        """
        width, height = self.dimensions
        scale = max(width / max_size, height / max_size, 1.0)
        size = (max(1, int(width / scale)), max(1, int(height / scale)))
        return self.read_level_resized(self.best_level_for_downsample(scale), size)

    def read_level_resized(self, level: int, size: tuple[int, int], band_bytes: int | None = None) -> np.ndarray:
        """Read a whole level resized to ``size = (width, height)``, streaming horizontal bands.

        Only one band of the level (about `band_bytes`) is in memory at a time, so this is safe
        on a level 0 of any size: memory is the output plus one band.

        Args:
            level: The pyramid level to read.
            size: Output ``(width, height)``; equal to the level size means no resize.
            band_bytes: Upper bound on the bytes of level pixels read at once (at least one
                output row's worth); None = `BAND_BYTES` (32 MiB).

        Returns:
            An ``(height, width, 3)`` uint8 RGB array.
        """
        level_w, level_h = self.level_dimensions[level]
        out_w, out_h = size
        band_bytes = BAND_BYTES if band_bytes is None else band_bytes
        if (out_w, out_h) == (level_w, level_h) and level_w * level_h * 3 <= band_bytes:
            return self.read_region((0, 0), level, (level_w, level_h))
        downsample = self.level_downsamples[level]
        rows_per_out = level_h / out_h
        band_rows = max(1, int(band_bytes / (3 * level_w * rows_per_out)))
        out = np.empty((out_h, out_w, 3), np.uint8)
        for start in range(0, out_h, band_rows):
            stop = min(out_h, start + band_rows)
            y0, y1 = round(start * rows_per_out), round(stop * rows_per_out)
            band = self.read_region((0, int(y0 * downsample)), level, (level_w, max(1, y1 - y0)))
            out[start:stop] = cv2.resize(band, (out_w, stop - start), interpolation=cv2.INTER_AREA)
        return out

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.dimensions
        return (
            f"{type(self).__name__}({str(self.path)!r}, {width}x{height}, "
            f"mpp={self.mpp:.4g}, levels={self.level_count})"
        )


def slide_name(path: str | Path) -> str:
    """Return the slide name: the file name without its (last) extension."""
    return Path(path).stem


DEFAULT_BACKEND = "src.slides.tiffslide_backend.TiffSlideReader"


def open_slide(path: str | Path, mpp_override: float | None = None, backend: str | None = None) -> SlideReader:
    """Open a slide.

    Args:
        path: The slide file.
        mpp_override: Microns per pixel to use instead of the file's own (or when it has none).
        backend: Dotted path of a `SlideReader` subclass; None = tiffslide.

    Returns:
        An open `SlideReader`; close it or use it as a context manager.

    Raises:
        SlideError: The file is missing, corrupt, or has no usable MPP and no override.
        ValueError: `backend` does not name a `SlideReader` subclass.
    """
    module_name, _, class_name = (backend or DEFAULT_BACKEND).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"Slide backend {backend!r} is not an importable class: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, SlideReader)):
        raise ValueError(f"Slide backend {backend!r} is not a SlideReader subclass")
    return cls(path, mpp_override=mpp_override)
