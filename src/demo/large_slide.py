"""A large synthetic H&E-like slide rendered tile by tile (for benchmarks): never held in memory.

The tissue outline is a smooth random field kept at 1/16 of level 0 (a 40000 px slide needs a
2500 px field); each stored tile upsamples its patch of the field, thresholds it, and fills the
tissue from a small bank of pre-rendered textures (pink cytoplasm, purple nuclei). Lower levels
use the same field and the textures downsized, so every level shows the same slide.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from src.demo.svs import level_sizes, write_svs_tiles
from src.infra.files import atomic_path

FIELD_DOWNSAMPLE = 16
BACKGROUND_RGB = (242, 240, 243)
TEXTURES = 8


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """One ``side x side`` RGB tissue texture: eosin background, nuclei, noise (wraps at the edges)."""
    image = np.empty((side, side, 3), np.uint8)
    image[:] = (226, 150, 196)
    for _ in range(int(side * side / 900)):
        x, y = rng.integers(0, side, 2)
        axes = (int(rng.uniform(4, 9)), int(rng.uniform(3, 6)))
        colour = tuple(float(c) for c in np.array((92, 56, 150)) + rng.normal(0, 12, 3))
        cv2.ellipse(image, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    noise = rng.normal(0, 6, (side, side, 1)).astype(np.float32)
    image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (3, 3), 0.8)


class LargeSlide:
    """Render a large tissue-like slide one stored tile at a time.

    Args:
        size: Level-0 side in pixels (square slide).
        tissue_fraction: Fraction of the slide covered by tissue.
        seed: Random seed.
        tile: Stored tile side in pixels.
    """

    def __init__(self, size: int = 40000, tissue_fraction: float = 0.4, seed: int = 0, tile: int = 256) -> None:
        self.size, self.tile = int(size), int(tile)
        rng = np.random.default_rng(seed)
        side = -(-self.size // FIELD_DOWNSAMPLE) + 2
        coarse = cv2.GaussianBlur(rng.random((48, 48), dtype=np.float32), (0, 0), 2.5)
        field = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        self.field = field
        self.threshold = float(np.quantile(field[::8, ::8], 1 - tissue_fraction))
        self.textures = [_texture(rng, tile) for _ in range(TEXTURES)]
        self._banks: dict[int, list[np.ndarray]] = {}
        self.background = np.clip(
            np.array(BACKGROUND_RGB, np.float32) + rng.normal(0, 1.5, (tile, tile, 3)), 0, 255
        ).astype(np.uint8)

    def _bank(self, downsample: int) -> list[np.ndarray]:
        """Textures as seen at `downsample`: each shrunk and repeated to fill a stored tile."""
        if downsample not in self._banks:
            small = max(1, self.tile // downsample)
            self._banks[downsample] = [
                np.tile(cv2.resize(t, (small, small), interpolation=cv2.INTER_AREA), (downsample, downsample, 1))[
                    : self.tile, : self.tile
                ]
                for t in self.textures
            ]
        return self._banks[downsample]

    def render(self, downsample: int, row: int, col: int) -> np.ndarray:
        """Stored tile ``(row, col)`` of the level at `downsample` (outside the slide is white)."""
        tile = self.tile
        span = tile * downsample / FIELD_DOWNSAMPLE  # field pixels covered by this tile
        x0, y0 = col * span, row * span
        # an affine warp samples the field at this tile's pixel centres (bilinear)
        scale = span / tile
        matrix = np.array([[scale, 0, x0 + scale / 2 - 0.5], [0, scale, y0 + scale / 2 - 0.5]], np.float32)
        values = cv2.warpAffine(
            self.field, matrix, (tile, tile), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0
        )
        mask = values > self.threshold
        texture = self._bank(downsample)[(row * 7 + col * 13) % TEXTURES]
        if not mask.any():
            out = self.background.copy()
        elif mask.all():
            out = texture.copy()
        else:
            out = np.where(mask[:, :, None], texture, self.background)
        level_px = self.size // downsample
        right, bottom = level_px - col * tile, level_px - row * tile
        if right < tile:
            out[:, max(0, right) :] = 255
        if bottom < tile:
            out[max(0, bottom) :] = 255
        return out

    def thumbnail(self, max_px: int = 512) -> np.ndarray:
        """A small RGB overview of the slide."""
        side = min(max_px, self.size)
        mask = cv2.resize(self.field, (side, side), interpolation=cv2.INTER_AREA) > self.threshold
        out = np.empty((side, side, 3), np.uint8)
        out[:] = BACKGROUND_RGB
        out[mask] = (200, 130, 180)
        return out

    def tissue_fraction(self) -> float:
        """The fraction of level 0 covered by tissue (from the field)."""
        n = self.size // FIELD_DOWNSAMPLE
        return float((self.field[:n, :n] > self.threshold).mean())

    def write(self, path: str | Path, mpp: float = 0.25, quality: int = 80, downsamples: tuple = (4, 16)) -> float:
        """Write the slide as an Aperio SVS; returns the seconds it took."""
        start = time.perf_counter()
        with atomic_path(path, fsync=False) as tmp:
            write_svs_tiles(
                tmp, (self.size, self.size), mpp, self.render, self.thumbnail(), self.tile, downsamples, quality
            )
        return time.perf_counter() - start


__all__ = ["LargeSlide", "level_sizes"]
