"""Write a small DICOM whole-slide image (for reader tests): one VL Whole Slide Microscopy instance per level.

A DICOM WSI is a *series*: each pyramid level (and each label or overview image) is one file, all sharing a
``SeriesInstanceUID``; a reader opens one file and finds the others in its folder. Each level here is one
``TILED_FULL`` multi-frame instance (row-major tiles, padded with white at the right and bottom edges) in
explicit-VR little-endian, uncompressed 8-bit RGB, with the pixel spacing (mm) in the shared functional
groups. ``image_type`` and ``transfer_syntax`` can be set to what a reader does not accept, to test its errors.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
VOLUME_TYPE = ("ORIGINAL", "PRIMARY", "VOLUME", "NONE")
_LONG_VRS = {"OB", "OW", "SQ", "UN", "UT", "UC", "UR"}  # 2 reserved bytes, then a 4-byte length
_UID_ROOT = "2.25."


def _pad(value: bytes, vr: str) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in {"UI", "OB"} else b" "
    return value


def _element(group: int, number: int, vr: str, value: bytes) -> bytes:
    value = _pad(value, vr)
    head = struct.pack("<HH", group, number) + vr.encode("ascii")
    if vr in _LONG_VRS:
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _text(group: int, number: int, vr: str, *values: object) -> bytes:
    return _element(group, number, vr, "\\".join(str(v) for v in values).encode("ascii"))


def _us(group: int, number: int, value: int) -> bytes:
    return _element(group, number, "US", struct.pack("<H", value))


def _ul(group: int, number: int, value: int) -> bytes:
    return _element(group, number, "UL", struct.pack("<I", value))


def _sequence(group: int, number: int, *items: bytes) -> bytes:
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item for item in items)
    return _element(group, number, "SQ", body)


def _uid(seed: int, part: int) -> str:
    return f"{_UID_ROOT}{seed}{part:04d}"


def write_dicom_wsi(
    folder: str | Path,
    image: np.ndarray,
    mpp: float,
    tile: int = 256,
    downsamples: Sequence[int] = (4,),
    image_type: Sequence[str] = VOLUME_TYPE,
    transfer_syntax: str = EXPLICIT_VR_LITTLE_ENDIAN,
    seed: int = 1,
) -> list[Path]:
    """Write an RGB image as a DICOM WSI series: ``level0.dcm``, ``level1.dcm``... in ``folder``.

    Args:
        folder: The series' folder (created).
        image: ``(H, W, 3)`` uint8 RGB level-0 image.
        mpp: Microns per level-0 pixel.
        tile: Frame (tile) side in pixels.
        downsamples: Integer downsamples of the lower levels (levels under one tile are left out).
        image_type: ``ImageType`` of every level (value 3, the image flavor, is ``VOLUME`` for a level).
        transfer_syntax: The transfer syntax UID written in the file meta (the pixels stay uncompressed).
        seed: Makes the UIDs (two series written with one seed share their ``SeriesInstanceUID``).

    Returns:
        The files written, level 0 first.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = image.shape[:2]
    levels = [image] + [
        cv2.resize(image, (width // d, height // d), interpolation=cv2.INTER_AREA)
        for d in downsamples
        if min(width // d, height // d) >= tile
    ]
    paths = []
    for number, level in enumerate(levels):
        path = folder / f"level{number}.dcm"
        path.write_bytes(
            _instance(level, mpp * width / level.shape[1], tile, image_type, transfer_syntax, seed, number)
        )
        paths.append(path)
    return paths


def _instance(
    level: np.ndarray, mpp: float, tile: int, image_type: Sequence[str], syntax: str, seed: int, number: int
) -> bytes:
    height, width = level.shape[:2]
    rows, cols = -(-height // tile), -(-width // tile)
    padded = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    padded[:height, :width] = level
    frames = padded.reshape(rows, tile, cols, tile, 3).transpose(0, 2, 1, 3, 4).tobytes()  # row-major tiles
    instance = _uid(seed, 100 + number)
    meta = b"".join([
        _element(0x0002, 0x0001, "OB", b"\0\1"),
        _text(0x0002, 0x0002, "UI", WSI_SOP_CLASS),
        _text(0x0002, 0x0003, "UI", instance),
        _text(0x0002, 0x0010, "UI", syntax),
        _text(0x0002, 0x0012, "UI", _uid(seed, 9999)),
    ])  # fmt: skip
    spacing_mm = f"{mpp / 1000:.10g}"
    pixel_measures = _text(0x0028, 0x0030, "DS", spacing_mm, spacing_mm)
    shared = _sequence(0x0028, 0x9110, pixel_measures)
    dataset = b"".join([
        _text(0x0008, 0x0008, "CS", *image_type),
        _text(0x0008, 0x0016, "UI", WSI_SOP_CLASS),
        _text(0x0008, 0x0018, "UI", instance),
        _text(0x0008, 0x0060, "CS", "SM"),
        _text(0x0020, 0x000D, "UI", _uid(seed, 1)),
        _text(0x0020, 0x000E, "UI", _uid(seed, 2)),
        _text(0x0020, 0x9311, "CS", "TILED_FULL"),
        _us(0x0028, 0x0002, 3),
        _text(0x0028, 0x0004, "CS", "RGB"),
        _us(0x0028, 0x0006, 0),
        _text(0x0028, 0x0008, "IS", rows * cols),
        _us(0x0028, 0x0010, tile),
        _us(0x0028, 0x0011, tile),
        _us(0x0028, 0x0100, 8),
        _us(0x0028, 0x0101, 8),
        _us(0x0028, 0x0102, 7),
        _us(0x0028, 0x0103, 0),
        _ul(0x0048, 0x0006, width),
        _ul(0x0048, 0x0007, height),
        _ul(0x0048, 0x0303, 1),
        _sequence(0x5200, 0x9229, shared),
        _element(0x7FE0, 0x0010, "OB", frames),
    ])  # fmt: skip
    return b"\0" * 128 + b"DICM" + _ul(0x0002, 0x0000, len(meta)) + meta + dataset
