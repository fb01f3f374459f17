"""Tissue detection: Slideflow's Otsu slide mask and its per-tile grayspace/whitespace filters."""

from __future__ import annotations

import cv2
import numpy as np

from src.slides.reader import SlideReader

# Otsu runs on the smallest level whose smaller side is above this
OTSU_MIN_SIDE_PX = 500
# Larger levels (no pyramid) are streamed and downsized to about this many pixels
OTSU_MAX_PIXELS = 4096 * 4096


def otsu_level(reader: SlideReader) -> int:
    """Return the smallest pyramid level whose smaller side is > 500 px (level 0 if none)."""
    candidates = [
        level for level, (width, height) in enumerate(reader.level_dimensions) if min(width, height) > OTSU_MIN_SIDE_PX
    ]
    return max(candidates) if candidates else 0


def otsu_mask(reader: SlideReader) -> tuple[np.ndarray, float]:
    """Compute Slideflow's Otsu background mask (`slide/qc/otsu.py`).

    RGB -> HSV, median blur (k=7) of the saturation channel, then Otsu's threshold with
    ``THRESH_BINARY_INV`` so that low-saturation (background) pixels are True.

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
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[:, :, 1]
    blurred = cv2.medianBlur(saturation, 7)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_OTSU | cv2.THRESH_BINARY_INV)
    downsample = reader.dimensions[0] / size[0]
    return mask.astype(bool), float(downsample)


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
    return cv2.countNonZero(cv2.compare(saturation, threshold * 255, cv2.CMP_LT)) / saturation.size


def whitespace_fraction(tile: np.ndarray, threshold: float = 230) -> float:
    """Fraction of pixels whose RGB mean is above `threshold` (0-255).

    Args:
        tile: ``(H, W, 3)`` uint8 RGB tile.
        threshold: Brightness above which a pixel is white.
    """
    red, green, blue = cv2.split(tile)
    total = cv2.add(cv2.add(red, green, dtype=cv2.CV_16U), blue, dtype=cv2.CV_16U)  # R + G + B
    return np.count_nonzero(total > 3 * threshold) / total.size
