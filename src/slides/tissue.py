"""Tissue detection: Slideflow's Otsu slide mask and its per-tile grayspace/whitespace filters.

Bright-field slides (H&E, IHC: tissue on white glass) are masked on saturation, as Slideflow does. A dark-field
slide (fluorescence: tissue glowing on a black background) has a noisy black background whose saturation is as
high as the tissue's, so a saturation mask keeps it; :func:`is_dark_field` recognises such a slide by its dark
border, and :func:`otsu_mask` then masks it on brightness instead (tissue = brighter than the background),
with a warning naming the slide. The per-tile grayspace and whitespace filters are bright-field filters: on a
dark-field slide only the Otsu mask (``tiles.qc=otsu``, the default) separates tissue from background.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from src.slides.reader import SlideReader

log = logging.getLogger(__name__)

# Otsu runs on the smallest level whose smaller side is above this
OTSU_MIN_SIDE_PX = 500
# Larger levels (no pyramid) are streamed and downsized to about this many pixels
OTSU_MAX_PIXELS = 4096 * 4096
# Dark field: the median brightness (max of R, G, B) of the image's outer frame is below this (glass reads
# ~230-250, a fluorescence background ~0-30) and the whole image's median is below mid-grey (so a bright-field
# slide with black scanner padding at its edges, mostly glass and tissue, is not taken for one)
DARK_BORDER_MAX = 64
DARK_MEDIAN_MAX = 128
BORDER_FRACTION = 0.05  # the frame: this fraction of each side

_dark_logged: set[str] = set()  # slides already logged as dark-field (once per process)


def is_dark_field(image: np.ndarray) -> bool:
    """Whether an RGB slide image (a low level or thumbnail) shows tissue on a dark background.

    True when the median brightness (max of R, G, B) of its outer frame (:data:`BORDER_FRACTION` of each side)
    is below :data:`DARK_BORDER_MAX` and that of the whole image below :data:`DARK_MEDIAN_MAX`.
    """
    brightness = image.max(axis=2) if image.ndim == 3 else image
    height, width = brightness.shape
    dy, dx = max(1, int(height * BORDER_FRACTION)), max(1, int(width * BORDER_FRACTION))
    frame = np.concatenate([
        brightness[:dy].ravel(), brightness[-dy:].ravel(), brightness[:, :dx].ravel(), brightness[:, -dx:].ravel()
    ])  # fmt: skip
    return bool(np.median(frame) < DARK_BORDER_MAX and np.median(brightness) < DARK_MEDIAN_MAX)


def otsu_level(reader: SlideReader) -> int:
    """Return the smallest pyramid level whose smaller side is > 500 px (level 0 if none)."""
    candidates = [
        level for level, (width, height) in enumerate(reader.level_dimensions) if min(width, height) > OTSU_MIN_SIDE_PX
    ]
    return max(candidates) if candidates else 0


def otsu_mask(reader: SlideReader) -> tuple[np.ndarray, float]:
    """Compute Slideflow's Otsu background mask (`slide/qc/otsu.py`), or its dark-field counterpart.

    RGB -> HSV, median blur (k=7) of the saturation channel, then Otsu's threshold with
    ``THRESH_BINARY_INV`` so that low-saturation (background) pixels are True. On a dark-field slide
    (:func:`is_dark_field`) the value channel (brightness) takes the saturation's place, so that dark
    (background) pixels are True; a warning names the slide, once per process.

    A level above 4096x4096 px (a slide without a pyramid) is read in bands and downsized first,
    so level 0 is never loaded whole.

    Args:
        reader: An open slide.

    Returns:
        ``(mask, downsample)``: boolean ``(H, W)`` mask, True = background, and the level-0
        pixels per mask pixel.
    """
    level = otsu_level(reader)
    width, height = reader.level_dimensions[level]
    shrink = max(1.0, float(np.sqrt(width * height / OTSU_MAX_PIXELS)))
    size = (max(1, int(width / shrink)), max(1, int(height / shrink)))
    image = reader.read_level_resized(level, size)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    if is_dark_field(image):
        _log_dark_field(reader, image)
        channel = hsv[:, :, 2]  # brightness: the tissue glows, the background is dark
    else:
        channel = hsv[:, :, 1]  # saturation: stained tissue on grey-white glass
    blurred = cv2.medianBlur(channel, 7)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_OTSU | cv2.THRESH_BINARY_INV)
    downsample = reader.dimensions[0] / size[0]
    return mask.astype(bool), float(downsample)


def _log_dark_field(reader: SlideReader, image: np.ndarray) -> None:
    key = str(getattr(reader, "path", id(reader)))
    if key in _dark_logged:
        return
    _dark_logged.add(key)
    log.warning(
        "Slide %s has a dark background (median brightness %d/255): taken as a dark-field (fluorescence) slide, "
        "its tissue mask keeps what is brighter than the background. A model trained on bright-field slides "
        "(H&E, IHC) does not apply to it",
        getattr(reader, "name", key), int(np.median(image.max(axis=2))),
    )  # fmt: skip


def mask_fraction(mask: np.ndarray, downsample: float, coords: np.ndarray, full_extract_px: int) -> np.ndarray:
    """Mean of `mask` over each tile's footprint (Slideflow's `apply_qc_mask` rounding).

    Args:
        mask: Boolean ``(H, W)`` mask at `downsample`.
        downsample: Level-0 pixels per mask pixel.
        coords: ``(N, 2)`` tile top-left corners in level-0 pixels.
        full_extract_px: Tile side in level-0 pixels.

    Returns:
        ``(N,)`` float array; NaN for a footprint entirely outside the mask.
    """
    height, width = mask.shape
    integral = cv2.integral(mask.astype(np.uint8)).astype(np.int64)
    side = int(np.round(full_extract_px / downsample))
    x0 = np.clip(np.round(coords[:, 0] / downsample).astype(np.int64), 0, width)
    y0 = np.clip(np.round(coords[:, 1] / downsample).astype(np.int64), 0, height)
    x1, y1 = np.minimum(x0 + side, width), np.minimum(y0 + side, height)
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = (x1 - x0) * (y1 - y0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, total / np.maximum(area, 1), np.nan)


def grayspace_fraction(tile: np.ndarray, threshold: float = 0.05) -> float:
    """Fraction of pixels whose HSV saturation (in [0, 1]) is below `threshold`.

    Args:
        tile: ``(H, W, 3)`` uint8 RGB tile.
        threshold: Saturation below which a pixel is gray.
    """
    saturation = cv2.extractChannel(cv2.cvtColor(tile, cv2.COLOR_RGB2HSV), 1)
    gray = cv2.compare(saturation, threshold * 255, cv2.CMP_LT)  # type: ignore[call-overload]  # stubs: no scalar
    return cv2.countNonZero(gray) / saturation.size


def whitespace_fraction(tile: np.ndarray, threshold: float = 230) -> float:
    """Fraction of pixels whose RGB mean is above `threshold` (0-255).

    Args:
        tile: ``(H, W, 3)`` uint8 RGB tile.
        threshold: Brightness above which a pixel is white.
    """
    red, green, blue = cv2.split(tile)
    total = cv2.add(cv2.add(red, green, dtype=cv2.CV_16U), blue, dtype=cv2.CV_16U)  # R + G + B
    return np.count_nonzero(total > 3 * threshold) / total.size
