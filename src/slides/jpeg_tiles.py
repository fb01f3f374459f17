"""Fast reads from JPEG-tiled TIFF levels: each stored tile is read once and decoded directly.

Generic readers (tiffslide → zarr → tifffile) spend far more time in Python per region than in the
JPEG decoder. For a level stored as baseline JPEG tiles (Aperio SVS, most pyramidal TIFFs), this
module fetches a stored tile's bytes with one ``pread`` and decodes it with libjpeg-turbo
(``cv2.imdecode``), optionally **in the DCT domain at 1/2, 1/4 or 1/8 scale** (libjpeg's scaled
IDCT), which is how a 512 px region becomes a 256 px tile for the price of decoding four 128 px
tiles. Decoding is checked against tifffile's own decoder on a few tiles when the level is first
used (`JpegTiledLevel.probe`); a level that disagrees (an unusual colour space, say) is read the
generic way instead. Everything here releases the GIL in the decoder, so threads scale.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import cv2
import numpy as np

JPEG_COMPRESSION = 7
REDUCTIONS = (1, 2, 4, 8)  # libjpeg's scaled IDCT: 8/8, 4/8, 2/8, 1/8
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION,
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}
# An Adobe APP14 segment with transform 0 tells libjpeg that 3 components are RGB, not YCbCr
# (Aperio writes RGB JPEG tiles without any marker saying so; TIFF says it in PhotometricInterpretation).
ADOBE_RGB_MARKER = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
PHOTOMETRIC_RGB = 2
CACHE_TILES = 64  # decoded stored tiles kept per thread (neighbouring grid tiles share them)


class JpegTiledLevel:
    """Direct access to the JPEG stored tiles of one TIFF page (one pyramid level).

    Args:
        fd: An open file descriptor of the slide (read with ``os.pread``, so thread-safe).
        page: The tifffile ``TiffPage`` of the level.

    Raises:
        ValueError: The page is not tiled 8-bit 3-sample baseline JPEG.
    """

    def __init__(self, fd: int, page) -> None:
        if page.compression != JPEG_COMPRESSION or not page.is_tiled or page.samplesperpixel != 3:
            raise ValueError("not a tiled 3-sample JPEG page")
        if page.bitspersample != 8 or page.tiledepth != 1 or page.planarconfig != 1:
            raise ValueError("not an 8-bit contiguous page")
        self.fd = fd
        self.width, self.height = int(page.imagewidth), int(page.imagelength)
        self.tile_w, self.tile_h = int(page.tilewidth), int(page.tilelength)
        self.cols = -(-self.width // self.tile_w)
        self.rows = -(-self.height // self.tile_h)
        self.offsets = np.asarray(page.dataoffsets, np.int64)
        self.counts = np.asarray(page.databytecounts, np.int64)
        if len(self.offsets) != self.rows * self.cols:
            raise ValueError("unexpected number of stored tiles")
        tables = page.jpegtables
        # what replaces each stream's SOI: SOI, the RGB marker if needed, the shared tables (no SOI/EOI)
        self._head = b"\xff\xd8"
        if page.photometric == PHOTOMETRIC_RGB:
            self._head += ADOBE_RGB_MARKER
        if tables:
            self._head += bytes(tables[2:-2])
        self._local = threading.local()

    def raw(self, row: int, col: int) -> bytes:
        """The stored bytes of tile ``(row, col)`` as a complete JPEG stream (b"" if absent)."""
        index = row * self.cols + col
        count = int(self.counts[index])
        if count == 0:
            return b""
        data = os.pread(self.fd, count, int(self.offsets[index]))
        if len(self._head) > 2 and data[:2] == b"\xff\xd8":
            data = self._head + data[2:]
        return data

    def decode(self, row: int, col: int, reduce: int = 1, bgr: bool = False) -> np.ndarray:
        """Decode stored tile ``(row, col)`` at ``1/reduce`` scale to an RGB (or BGR) uint8 array.

        A missing (sparse) tile is white.
        """
        data = self.raw(row, col)
        shape = (self.tile_h // reduce, self.tile_w // reduce, 3)
        if not data:
            return np.full(shape, 255, np.uint8)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_FLAGS[reduce])
        if image is None or image.shape != shape:
            raise ValueError(f"stored tile ({row}, {col}) decoded to {None if image is None else image.shape}")
        return image if bgr else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _cached(self, row: int, col: int, reduce: int) -> np.ndarray:
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        key = (row, col, reduce)
        tile = cache.get(key)
        if tile is None:
            tile = cache[key] = self.decode(row, col, reduce, bgr=True)
            if len(cache) > CACHE_TILES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return tile

    def read(self, x: int, y: int, width: int, height: int, reduce: int = 1) -> np.ndarray:
        """Read a region of the level at ``1/reduce`` scale; outside the level is white.

        Args:
            x: Left edge in level pixels divided by `reduce` (a multiple-of-`reduce` origin).
            y: Top edge, likewise.
            width: Output width in reduced pixels.
            height: Output height in reduced pixels.
            reduce: 1, 2, 4 or 8.

        Returns:
            An ``(height, width, 3)`` uint8 RGB array.
        """
        tw, th = self.tile_w // reduce, self.tile_h // reduce
        level_w, level_h = -(-self.width // reduce), -(-self.height // reduce)
        out = np.empty((height, width, 3), np.uint8)
        x1, y1 = min(x + width, level_w), min(y + height, level_h)
        if x < 0 or y < 0 or x1 < x + width or y1 < y + height:
            out.fill(255)
        for row in range(max(0, y) // th, (max(y1, 1) - 1) // th + 1):
            for col in range(max(0, x) // tw, (max(x1, 1) - 1) // tw + 1):
                tx0, ty0 = col * tw, row * th
                sx0, sy0 = max(x, tx0), max(y, ty0)
                sx1, sy1 = min(x1, tx0 + tw), min(y1, ty0 + th)
                if sx1 <= sx0 or sy1 <= sy0:
                    continue
                tile = self._cached(row, col, reduce)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0]
        return cv2.cvtColor(out, cv2.COLOR_BGR2RGB, dst=out)  # tiles are cached as decoded (BGR)

    def probe(self, page, samples: int = 3, tolerance: int = 2) -> bool:
        """Whether direct decoding matches tifffile's decoder on a few stored tiles.

        Args:
            page: The tifffile page this level reads.
            samples: Tiles checked (first, middle, last non-empty ones).
            tolerance: Largest per-pixel difference accepted (decoder rounding).
        """
        present = np.flatnonzero(self.counts > 0)
        if not len(present):
            return True
        picks = sorted({int(present[i]) for i in np.linspace(0, len(present) - 1, samples).round().astype(int)})
        try:
            for index in picks:
                row, col = divmod(index, self.cols)
                data = os.pread(self.fd, int(self.counts[index]), int(self.offsets[index]))
                expected = page.decode(data, index, jpegtables=page.jpegtables)[0]
                expected = np.asarray(expected).reshape(self.tile_h, self.tile_w, -1)[:, :, :3]
                ours = self.decode(row, col)
                if np.abs(ours.astype(np.int16) - expected.astype(np.int16)).max() > tolerance:
                    return False
        except Exception:
            return False
        return True


def pick_reduction(level_x: int, level_y: int, extract_px: int, tile_px: int, tile_w: int, tile_h: int) -> int:
    """The largest DCT-domain reduction usable for a region (1 when none fits).

    The reduced region must be at least `tile_px` wide (never upsample), start on a reduced
    pixel, and the stored tiles must divide evenly.
    """
    for reduce in REDUCTIONS[::-1]:
        if reduce == 1:
            return 1
        if (
            extract_px // reduce >= tile_px
            and extract_px % reduce == 0
            and level_x % reduce == 0
            and level_y % reduce == 0
            and tile_w % reduce == 0
            and tile_h % reduce == 0
        ):
            return reduce
    return 1
