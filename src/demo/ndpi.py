"""Write a small Hamamatsu NDPI file (for reader tests): NDPI's TIFF variant, JPEG strips per level.

NDPI is classic little-endian TIFF with 64-bit extensions: an 8-byte first-IFD offset in the
header, and after each IFD's 12-byte tag entries an 8-byte next-IFD offset, 4 high-order bytes per
tag, and (as tifffile also reads it there) the 8-byte next-IFD offset again. Each pyramid level is
one page holding one baseline JPEG strip (YCbCr), tagged with Hamamatsu's private tags (65420 file
format, 65421 source lens = magnification, 65422-4 offsets). tifffile and so tiffslide read it as
``hamamatsu``; real scanner files add McuStarts tags for random access, which small files do without.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

ASCII, SHORT, LONG, RATIONAL, SLONG, FLOAT = 2, 3, 4, 5, 9, 11
_SIZES = {SHORT: 2, LONG: 4, RATIONAL: 8, SLONG: 4, FLOAT: 4}
_FORMATS = {SHORT: "H", LONG: "I", SLONG: "i", FLOAT: "f"}


def _pack(dtype: int, values: Sequence) -> bytes:
    if dtype == ASCII:
        return values[0].encode("ascii") + b"\0"
    if dtype == RATIONAL:
        return b"".join(struct.pack("<II", *value) for value in values)
    return struct.pack(f"<{len(values)}{_FORMATS[dtype]}", *values)


def write_ndpi(
    path: str | Path, image: np.ndarray, mpp: float, downsamples: Sequence[int] = (4, 16), quality: int = 90
) -> None:
    """Write an RGB image as an NDPI pyramid (level 0 and each downsample, one JPEG strip each).

    Args:
        path: Output ``.ndpi`` file.
        image: ``(H, W, 3)`` uint8 RGB level-0 image.
        mpp: Microns per level-0 pixel (stored as resolution tags, pixels per centimetre).
        downsamples: Integer downsamples of the lower levels.
        quality: JPEG quality.
    """
    height, width = image.shape[:2]
    levels = [(1, image)] + [
        (d, cv2.resize(image, (width // d, height // d), interpolation=cv2.INTER_AREA)) for d in downsamples
    ]
    out = bytearray(b"II" + struct.pack("<H", 42) + b"\0" * 8)  # first-IFD offset patched below
    next_slots = [4]  # where the offset of the next IFD goes
    for downsample, level in levels:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(level, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("cv2 could not encode the level")
        strip_offset = len(out)
        out += jpeg.tobytes()
        pixels_per_cm = round(1e4 / (mpp * downsample))
        entries = [
            (254, LONG, [0]),
            (256, LONG, [level.shape[1]]),
            (257, LONG, [level.shape[0]]),
            (258, SHORT, [8, 8, 8]),
            (259, SHORT, [7]),  # JPEG
            (262, SHORT, [6]),  # YCbCr
            (271, ASCII, ["Hamamatsu"]),
            (272, ASCII, ["synthetic"]),
            (273, LONG, [strip_offset]),
            (277, SHORT, [3]),
            (278, LONG, [level.shape[0]]),
            (279, LONG, [len(jpeg)]),
            (282, RATIONAL, [(pixels_per_cm, 1)]),
            (283, RATIONAL, [(pixels_per_cm, 1)]),
            (296, SHORT, [3]),  # centimetre
            (65420, LONG, [1]),  # NDPI file format
            (65421, FLOAT, [10.0 / (mpp * downsample)]),  # source lens: magnification of this level
            (65422, SLONG, [0]),
            (65423, SLONG, [0]),
            (65424, SLONG, [0]),
        ]
        fields = []
        for code, dtype, values in entries:  # values over 4 bytes go before the IFD
            data = _pack(dtype, values)
            if len(data) > 4:
                offset = len(out)
                out += data + (b"\0" if len(data) % 2 else b"")
                data = struct.pack("<I", offset)
            count = len(_pack(dtype, values)) if dtype == ASCII else len(values)
            fields.append(struct.pack("<HHI", code, dtype, count) + data.ljust(4, b"\0"))
        if len(out) % 2:
            out += b"\0"
        ifd = len(out)
        for slot in next_slots:
            out[slot : slot + 8] = struct.pack("<Q", ifd)
        out += struct.pack("<H", len(fields)) + b"".join(fields)
        next_slots = [len(out)]
        out += b"\0" * 8  # 64-bit next-IFD offset (0 = last)
        out += b"\0" * (4 * len(fields))  # high-order bytes of every value/offset (all zero: < 4 GB)
        next_slots.append(len(out))
        out += b"\0" * 8  # the next-IFD offset again, where some readers look for it
    Path(path).write_bytes(bytes(out))
