"""Render a synthetic H&E-like slide whose look depends on its labels.

* adenocarcinoma: pink eosin cytoplasm, small round dark nuclei in gland-like rings around
  pale lumens;
* squamous: purple cytoplasm, larger, paler, elongated nuclei in sheets;
* tumour cellularity (10-90 %) sets the nucleus density;
* nuisance, so that single tiles are ambiguous while slides stay separable: 20-40 % of the
  tissue is label-free stroma; 5-20 % of the tumour shows the other type's pattern (mixed
  differentiation); every slide draws its cytoplasm and nucleus colours from ranges that
  overlap between the two types, plus a stain jitter (on top of a per-site shift) and a
  nucleus-size jitter.

Tissue is a few irregular blobs covering 35-50 % of a white (~240) background. All sizes are
in level-0 pixels at the demo's 0.5 microns per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND_RGB = (241, 240, 242)
CYTOPLASM_RGB = {"adenocarcinoma": (232, 152, 194), "squamous": (216, 150, 204)}
STROMA_RGB = (228, 174, 200)
LUMEN_RGB = (244, 228, 236)
NUCLEUS_RGB = {"adenocarcinoma": (62, 26, 104), "squamous": (128, 92, 170)}
SPINDLE_RGB = (92, 52, 120)


@dataclass(frozen=True)
class SlideLook:
    """What a slide looks like.

    Attributes:
        tumor_type: ``"adenocarcinoma"`` or ``"squamous"``.
        cellularity: Tumour cellularity in percent (10-90): nucleus density.
        stain: Per-channel optical-density multipliers (site shift x slide jitter).
        nucleus_scale: Multiplier of every nucleus size (slide jitter).
        stroma_fraction: Fraction of the tissue that is label-free stroma.
        mixed_fraction: Fraction of the tumour drawn with the other type's pattern.
        colour_mix: Where the cytoplasm and nucleus colours sit between adenocarcinoma's (0)
            and squamous' (1); drawn per slide from overlapping ranges.
    """

    tumor_type: str
    cellularity: float
    stain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    nucleus_scale: float = 1.0
    stroma_fraction: float = 0.15
    mixed_fraction: float = 0.0
    colour_mix: float | None = None

    @property
    def mix(self) -> float:
        """The colour position, defaulting to the pure colour of the tumour type."""
        if self.colour_mix is not None:
            return float(self.colour_mix)
        return 0.0 if self.tumor_type == "adenocarcinoma" else 1.0


def random_look(rng: np.random.Generator, tumor_type: str, cellularity: float, site_stain: tuple) -> SlideLook:
    """Draw the per-slide nuisance of a demo slide (stain, sizes, stroma, mixing, colours).

    Args:
        rng: Random generator.
        tumor_type: ``"adenocarcinoma"`` or ``"squamous"``.
        cellularity: Tumour cellularity in percent.
        site_stain: The site's optical-density multipliers.
    """
    stain = np.array(site_stain) * rng.normal(1.0, 0.12, 3)
    low = 0.0 if tumor_type == "adenocarcinoma" else 0.35
    stain_red, stain_green, stain_blue = (float(s) for s in np.clip(stain, 0.6, 1.5))
    return SlideLook(
        tumor_type=tumor_type,
        cellularity=cellularity,
        stain=(stain_red, stain_green, stain_blue),
        nucleus_scale=float(rng.uniform(0.85, 1.15)),
        stroma_fraction=float(rng.uniform(0.20, 0.40)),
        mixed_fraction=float(rng.uniform(0.05, 0.20)),
        colour_mix=float(rng.uniform(low, low + 0.65)),
    )


def _smooth_field(rng: np.random.Generator, size: int, cells: int, sigma: float) -> np.ndarray:
    """Smooth random field in [0, 1] at ``size x size``, built at ``cells x cells``."""
    low = cv2.GaussianBlur(rng.random((cells, cells), dtype=np.float32), (0, 0), sigma)
    low = (low - low.min()) / max(float(np.ptp(low)), 1e-6)
    return cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)


def tissue_masks(
    rng: np.random.Generator, size: int, stroma_fraction: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return boolean ``(tissue, stroma)`` masks: a few blobs, `stroma_fraction` of them stroma.

    Args:
        rng: Random generator.
        size: Side in pixels.
        stroma_fraction: Fraction of the tissue that is stroma; None draws it in 10-20 %.
    """
    cells = 48
    yy, xx = np.mgrid[0:cells, 0:cells].astype(np.float32)
    field = cv2.GaussianBlur(rng.random((cells, cells), dtype=np.float32), (0, 0), 2.0)
    field = 1.6 * (field - field.mean()) / max(float(field.std()), 1e-6) * 0.25
    for _ in range(rng.integers(3, 6)):
        cx, cy = rng.uniform(0.2, 0.8, 2) * cells
        sx, sy = rng.uniform(0.07, 0.16, 2) * cells
        field += np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2)
    coverage = rng.uniform(0.38, 0.48)
    full = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    tissue = full > np.quantile(full[::4, ::4], 1 - coverage)
    stroma_field = _smooth_field(rng, size, 32, 1.5)
    fraction = rng.uniform(0.10, 0.20) if stroma_fraction is None else stroma_fraction
    cut = np.quantile(stroma_field[::4, ::4][tissue[::4, ::4]], 1 - fraction)
    return tissue, tissue & (stroma_field > cut)


def _sample_points(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` random ``(x, y)`` points inside `mask`."""
    size = mask.shape[0]
    points = rng.integers(0, size, (int(count * 1.2 / max(mask.mean(), 1e-3)) + 1, 2))
    return points[mask[points[:, 1], points[:, 0]]][:count]


def _lerp(a: tuple, b: tuple, t: float) -> np.ndarray:
    return (1 - t) * np.array(a, np.float32) + t * np.array(b, np.float32)


def _draw_glands(rng: np.random.Generator, image: np.ndarray, tumor: np.ndarray, look: SlideLook) -> None:
    """Adenocarcinoma: rings of small round dark nuclei around pale lumens."""
    area = tumor.sum()
    glands = int(area * (0.05 + look.cellularity / 100) / 2600)
    nucleus_rgb = _lerp(NUCLEUS_RGB["adenocarcinoma"], NUCLEUS_RGB["squamous"], 0.5 * look.mix)
    for cx, cy in _sample_points(rng, tumor, glands):
        radius = rng.uniform(9, 16) * look.nucleus_scale
        cv2.circle(image, (int(cx), int(cy)), int(radius), LUMEN_RGB, -1, cv2.LINE_AA)
        r_nucleus = max(2.0, rng.normal(3.2, 0.3) * look.nucleus_scale)
        count = max(5, int(2 * np.pi * radius / (2.3 * r_nucleus)))
        angles = np.linspace(0, 2 * np.pi, count, endpoint=False) + rng.uniform(0, 6.3)
        ring = radius + r_nucleus
        for angle in angles:
            x = cx + ring * np.cos(angle) + rng.normal(0, 0.6)
            y = cy + ring * np.sin(angle) + rng.normal(0, 0.6)
            color = tuple(float(c) for c in nucleus_rgb + rng.normal(0, 8, 3))
            cv2.circle(image, (int(x), int(y)), round(r_nucleus), color, -1, cv2.LINE_AA)


def _draw_sheets(rng: np.random.Generator, image: np.ndarray, tumor: np.ndarray, look: SlideLook) -> None:
    """Squamous: sheets of larger, paler, elongated nuclei."""
    area = tumor.sum()
    count = int(area * (0.05 + look.cellularity / 100) / 210)
    nucleus_rgb = _lerp(NUCLEUS_RGB["adenocarcinoma"], NUCLEUS_RGB["squamous"], 0.5 + 0.5 * look.mix)
    for cx, cy in _sample_points(rng, tumor, count):
        major = max(3.0, rng.normal(7.0, 0.8) * look.nucleus_scale)
        minor = max(2.0, major * rng.uniform(0.45, 0.65))
        color = tuple(float(c) for c in nucleus_rgb + rng.normal(0, 10, 3))
        axes = (round(major), round(minor))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, (int(cx), int(cy)), axes, angle, 0, 360, color, -1, cv2.LINE_AA)


def _draw_spindles(rng: np.random.Generator, image: np.ndarray, stroma: np.ndarray) -> None:
    """Label-free stroma: sparse thin spindle nuclei (fibroblasts)."""
    for cx, cy in _sample_points(rng, stroma, int(stroma.sum() / 1500)):
        axes = (int(rng.uniform(5, 8)), int(rng.uniform(1, 2)))
        angle = float(rng.normal(30, 15))
        color = tuple(float(c) for c in np.array(SPINDLE_RGB) + rng.normal(0, 8, 3))
        cv2.ellipse(image, (int(cx), int(cy)), axes, angle, 0, 360, color, -1, cv2.LINE_AA)


def _stain_lut(stain: tuple[float, float, float]) -> np.ndarray:
    """Per-channel 256-entry table scaling optical density by `stain`."""
    values = np.arange(256, dtype=np.float64)
    density = -np.log((values + 1) / 256)
    lut = [np.clip(256 * np.exp(-density * s) - 1, 0, 255) for s in stain]
    return np.stack(lut, axis=1).round().astype(np.uint8)  # (256, 3)


def render_slide(rng: np.random.Generator, size: int, look: SlideLook) -> np.ndarray:
    """Render a ``(size, size, 3)`` uint8 RGB slide image.

    Args:
        rng: Random generator (the image is a pure function of its state and `look`).
        size: Side in level-0 pixels.
        look: Labels and jitter that drive the appearance.
    """
    tissue, stroma = tissue_masks(rng, size, look.stroma_fraction)
    tumor = tissue & ~stroma
    # Mixed differentiation: a patch of the tumour shows the other type's pattern.
    other = np.zeros_like(tumor)
    if look.mixed_fraction > 0 and tumor.any():
        field = _smooth_field(rng, size, 24, 1.2)
        other = tumor & (field > np.quantile(field[::4, ::4][tumor[::4, ::4]], 1 - look.mixed_fraction))
    cytoplasm = _lerp(CYTOPLASM_RGB["adenocarcinoma"], CYTOPLASM_RGB["squamous"], look.mix).round()
    palette = np.array([BACKGROUND_RGB, cytoplasm, STROMA_RGB], np.uint8)
    image = palette[tumor.view(np.uint8) + 2 * stroma.view(np.uint8)]
    gland_area, sheet_area = tumor & ~other, other
    if look.tumor_type == "squamous":
        gland_area, sheet_area = sheet_area, gland_area
    _draw_glands(rng, image, gland_area, look)
    _draw_sheets(rng, image, sheet_area, look)
    _draw_spindles(rng, image, stroma)
    # Texture: low-frequency shading and pixel noise, stronger on tissue than background.
    noise = np.empty((size, size), np.float32)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # cv2's generator is much faster than numpy's here
    cv2.randn(noise, 0.0, 1.0)  # type: ignore[call-overload]  # cv2's stubs want arrays; scalars work
    noise *= np.where(tissue, np.float32(5.0), np.float32(1.5))
    noise += (_smooth_field(rng, size, 24, 1.0) - 0.5) * 16 * tissue
    image = cv2.add(image, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)  # saturating
    image = cv2.GaussianBlur(image, (3, 3), 0.7)
    lut = _stain_lut(look.stain).reshape(256, 1, 3)
    image = cv2.LUT(image, lut)
    return image
