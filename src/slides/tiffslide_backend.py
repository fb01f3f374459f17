"""`SlideReader` backed by tiffslide (pure Python, reads SVS, generic TIFF, NDPI, SCN, BIF...)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.slides.reader import SlideError, SlideReader, slide_name

# MPP recovered only from TIFF resolution tags at or above this value is a screen or print
# default (72 dpi = 352.8 um/px, 300 dpi = 84.7 um/px), not a microscope scan: treat it as missing.
MAX_TAG_MPP = 20.0


class TiffSlideReader(SlideReader):
    """Slide reader using `tiffslide.TiffSlide`.

    Args:
        path: The slide file.
        mpp_override: Microns per pixel that replaces the file's own.

    Raises:
        SlideError: Missing or unreadable file, or no usable MPP and no override.
    """

    def __init__(self, path: str | Path, mpp_override: float | None = None) -> None:
        import tiffslide

        self.path = Path(path)
        self.name = slide_name(self.path)
        if not self.path.is_file():
            raise SlideError(f"Slide file not found: {self.path}")
        try:
            self._slide = tiffslide.TiffSlide(self.path)
            raw_properties = dict(self._slide.properties)
            self.dimensions = tuple(int(v) for v in self._slide.dimensions)  # type: ignore[assignment]
            self.level_count = int(self._slide.level_count)
            self.level_dimensions = [(int(w), int(h)) for w, h in self._slide.level_dimensions]
            self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        except Exception as err:  # tifffile raises many types for corrupt files
            raise SlideError(f"Cannot open slide {self.path}: {err}") from err
        self.properties = {k: str(v) for k, v in raw_properties.items() if v is not None}
        self.mpp = _resolve_mpp(self.path, raw_properties, mpp_override)

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

    def close(self) -> None:
        """Close the underlying tiffslide handle."""
        slide = getattr(self, "_slide", None)
        if slide is not None:
            slide.close()


def _to_rgb(region: np.ndarray) -> np.ndarray:
    """Return an ``HxWx3`` uint8 array from a gray, RGB or RGBA array."""
    if region.ndim == 2:
        region = np.repeat(region[:, :, None], 3, axis=2)
    if region.shape[2] == 4:
        region = region[:, :, :3]
    return np.ascontiguousarray(region, dtype=np.uint8)


def _resolve_mpp(path: Path, properties: dict, mpp_override: float | None) -> float:
    """Pick the slide's MPP: override, else tiffslide/vendor properties, else fail."""
    if mpp_override is not None:
        if not mpp_override > 0:
            raise SlideError(f"mpp_override must be > 0 for slide {path}, got {mpp_override}")
        return float(mpp_override)
    # tiffslide sets tiff.XResolution only when it recovered the MPP from resolution tags
    from_tags = "tiff.XResolution" in properties
    for key in ("tiffslide.mpp-x", "openslide.mpp-x", "aperio.MPP"):
        value = properties.get(key)
        try:
            mpp = float(value) if value is not None else None
        except (TypeError, ValueError):
            mpp = None
        if mpp is None or not np.isfinite(mpp) or mpp <= 0:
            continue
        if from_tags and mpp >= MAX_TAG_MPP:
            break
        return mpp
    raise SlideError(
        f"Slide {path} has no usable microns-per-pixel (MPP) in its metadata; "
        "pass mpp_override (e.g. project.mpp_override=0.5) to set it."
    )
