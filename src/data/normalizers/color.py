"""sRGB ↔ CIE L*a*b* (D65, L in 0-100) as OpenCV's float conversion computes it, per tile and batched in torch.

The fit (pooled pixels, once per model) and the one-tile reference call OpenCV. Batched tiles use
:class:`LabSpace`, on any device: uint8 RGB → L*a*b* is a lookup in a table of OpenCV's own result for every
one of the 2^24 colours (OpenCV interpolates its float RGB → L*a*b* trilinearly in a 33³ grid, in integers:
the table is built the same way, so the two agree to OpenCV's output step, 100/2^14 in L* and 1/64 in a*
and b*, on all colours; the exact CIE formulas differ from both by up to ~0.3 units, which Reinhard's gain
magnifies on pale tiles). L*a*b* → sRGB uses the CIE formulas, as OpenCV does (within 0.02 grey levels).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch

# OpenCV's sRGB (D65) matrices and white point (imgproc/src/color_lab.cpp)
RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
XYZ_TO_RGB = ((3.240479, -1.53715, -0.498535), (-0.969256, 1.875991, 0.041556), (0.055648, -0.204043, 1.057311))
WHITE = (0.950456, 1.0, 1.088754)
#: L*a*b* = LAB_FROM_F @ (f(X/Xn), f(Y), f(Z/Zn)) + LAB_OFFSET, with f the CIE cube-root function
LAB_FROM_F = ((0.0, 116.0, 0.0), (500.0, -500.0, 0.0), (0.0, 200.0, -200.0))
LAB_OFFSET = (-16.0, 0.0, 0.0)
_F0 = 0.206893  # f(ε), ε = 0.008856: f is linear below it
_SRGB_T0 = 0.0031308  # linear light below which sRGB is linear
# OpenCV's interpolated RGB → L*a*b*: a 33³ grid (LAB_LUT_DIM), inputs scaled to 2^14 (LAB_BASE), 16 steps per cell
_GRID, _BASE, _STEPS = 33, 1 << 14, 16
#: OpenCV's float L*a*b* output steps: L* = level * 100 / 2^14, a*, b* = level * 256 / 2^14 - 128
LEVEL_SCALE = (100 / _BASE, 256 / _BASE, 256 / _BASE)
LEVEL_SHIFT = (0.0, -128.0, -128.0)


def _convert(values: torch.Tensor, code: int) -> torch.Tensor:
    array = np.ascontiguousarray(values.detach().cpu().numpy(), dtype=np.float32)
    shape = array.shape
    out = cv2.cvtColor(array.reshape(1, -1, 3), code)
    return torch.from_numpy(out.reshape(shape))


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3) sRGB values in [0, 1] to L*a*b* (OpenCV)."""
    return _convert(rgb.clamp(0, 1), cv2.COLOR_RGB2LAB)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3) L*a*b* to sRGB, clipped to [0, 1] (OpenCV)."""
    return _convert(lab, cv2.COLOR_LAB2RGB).clamp(0, 1)


def opencv_lab_grid() -> torch.Tensor:
    """OpenCV's RGB → L*a*b* grid: (33, 33, 33, 3) int32 levels at R, G, B = i/32 (``initLUTforLABLUVs16``).

    Float32 arithmetic in OpenCV's order (blue term first, its white-scaled coefficients rounded to float32),
    the sRGB decoding in float64; levels are ``round(2^14 L / 100)``, ``round(2^14 (a + 128) / 256)``, ...
    """
    coeffs = torch.tensor(RGB_TO_XYZ, dtype=torch.float64)
    white = torch.tensor(WHITE, dtype=torch.float32).double()
    scaled = (coeffs / white[:, None]).float()  # (XYZ, RGB)
    x = torch.arange(_GRID, dtype=torch.float64) / (_GRID - 1)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / (1 + 0.055)) ** 2.4).float()
    r, g, b = torch.meshgrid(linear, linear, linear, indexing="ij")
    xyz = [b * scaled[i, 2] + g * scaled[i, 1] + r * scaled[i, 0] for i in range(3)]
    threshold, slope, bias = 216 / 24389, 841 / 108, 16 / 116
    fx, fy, fz = (torch.where(t > threshold, t.double().pow(1 / 3), t.double() * slope + bias).float() for t in xyz)
    light = torch.where(xyz[1] > threshold, 116 * fy - 16, xyz[1] * torch.tensor(24389 / 27, dtype=torch.float32))
    levels = (light * _BASE / 100, (500 * (fx - fy) + 128) * _BASE / 256, (200 * (fy - fz) + 128) * _BASE / 256)
    return torch.stack([level.round() for level in levels], dim=-1).int()


def _axis_weights() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per uint8 value: the grid cell's two nodes and their integer weights (sum 16), as OpenCV computes them."""
    scaled = (torch.arange(256, dtype=torch.float32) / 255 * _BASE).round().int()  # cvRound(v * LAB_BASE)
    node = scaled >> 9  # 2^14 / 32 per cell
    step = (scaled >> 5) & (_STEPS - 1)
    return node, (node + 1).clamp_max(_GRID - 1), _STEPS - step, step


@lru_cache(maxsize=1)
def opencv_lab_levels() -> torch.Tensor:
    """(3, 2^24) int16: OpenCV's L*a*b* levels of every uint8 colour, at index ``R << 16 | G << 8 | B``.

    OpenCV's trilinear interpolation in integers (``trilinearInterpolate``: weights are products of the
    per-axis 16-step weights, the sum rounded at 2^12), one axis at a time: exact, so the same sums.
    96 MB, built once per process (~1 s).
    """
    first, second, w_first, w_second = _axis_weights()

    def along(grid: torch.Tensor, dim: int, values: slice = slice(None)) -> torch.Tensor:
        shape = [1] * grid.dim()
        shape[dim] = -1
        low, high = first[values], second[values]
        return grid.index_select(dim, low) * w_first[values].view(shape) + grid.index_select(dim, high) * w_second[
            values
        ].view(shape)

    partial = along(along(opencv_lab_grid(), 2), 1)  # (33, 256, 256, 3): blue, then green interpolated
    levels = torch.empty(3, 256, 256 * 256, dtype=torch.int16)
    for red in range(0, 256, 32):
        sums = along(partial, 0, slice(red, red + 32))  # (32, 256, 256, 3), at most 2^26
        levels[:, red : red + 32] = ((sums + 2048) >> 12).permute(3, 0, 1, 2).reshape(3, 32, -1).short()
    return levels.reshape(3, -1)


def cie_f_inverse(f: torch.Tensor) -> torch.Tensor:
    """Inverse of the CIE L*a*b* function ``f`` (cube above f(ε), linear toe below; ``f`` is not modified).

    ``max(f, f0)^3 + (min(f, f0) - f0) / 7.787``: the cube above f0 and the toe below, with no mask (same cost
    on any device, no data-dependent branch). :data:`F_INVERSE_OFFSET` is left to the caller to add.
    """
    return f.clamp_min(_F0).pow_(3).add_(f.clamp_max(_F0), alpha=1 / 7.787)


#: What :func:`cie_f_inverse` leaves out: ``- f0 / 7.787`` (``f0^3`` is its value at ``f0``, the toe's is 0)
F_INVERSE_OFFSET = -_F0 / 7.787


#: Linear light is encoded to uint8 sRGB by a table at this many steps per unit: the encoding's steepest slope
#: (12.92 x 255 per unit) moves at most 0.002 grey levels within a step, so only pixels that close to a
#: rounding boundary can round the other way.
ENCODE_STEPS = 1 << 20


def srgb_encoding_table() -> torch.Tensor:
    """(ENCODE_STEPS + 1,) uint8: the sRGB encoding of linear light ``i / ENCODE_STEPS``, rounded half up."""
    linear = torch.arange(ENCODE_STEPS + 1, dtype=torch.float64) / ENCODE_STEPS
    srgb = torch.where(linear <= _SRGB_T0, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return (srgb * 255 + 0.5).floor().to(torch.uint8)


class LabSpace:
    """Batched sRGB ↔ CIE L*a*b* for (B, 3, N) tiles on the tiles' device (tables cached per device).

    The way in gives OpenCV's L*a*b* *levels* (:meth:`levels`; L*a*b* = ``level_scale * level + level_shift``
    per channel); the way back goes from ``f = (f(X/Xn), f(Y), f(Z/Zn))``, in which L*a*b* is affine
    (``Lab = LAB_FROM_F @ f + LAB_OFFSET``): a normalizer that is affine in L*a*b* maps levels to ``f`` with
    one 3x3 matrix and offset per tile (:meth:`levels_to_uint8`).
    """

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """OpenCV's colour levels, their scale, the matrices back to sRGB and the encoding table, on ``device``."""
        key = str(device)
        if key not in self._tables:
            white = torch.tensor(WHITE, dtype=torch.float64)
            lab_from_f = torch.tensor(LAB_FROM_F, dtype=torch.float64)
            tables = {
                "to_rgb": torch.tensor(XYZ_TO_RGB, dtype=torch.float64) * white[None, :] * ENCODE_STEPS,
                "f_from_lab": torch.linalg.inv(lab_from_f),
                "lab_offset": torch.tensor(LAB_OFFSET, dtype=torch.float64),
                "level_scale": torch.tensor(LEVEL_SCALE, dtype=torch.float64),
                "level_shift": torch.tensor(LEVEL_SHIFT, dtype=torch.float64),
            }
            tables["rgb_offset"] = (tables["to_rgb"].sum(dim=1) * F_INVERSE_OFFSET + 0.5)[:, None]
            tables = {k: v.to(device=device, dtype=torch.float32) for k, v in tables.items()}
            tables["levels"] = opencv_lab_levels().to(device)
            tables["encode"] = srgb_encoding_table().to(device)
            self._tables[key] = tables
        return self._tables[key]

    def levels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, N) uint8 sRGB → (B, 3, N) float32 levels of OpenCV's float L*a*b* of ``images / 255``."""
        t = self.tables(images.device)
        index = images[:, 0].int().bitwise_left_shift_(16)
        index.bitwise_or_(images[:, 1].int().bitwise_left_shift_(8)).bitwise_or_(images[:, 2])
        index = index.reshape(-1)
        out = torch.empty((3, index.shape[0]), dtype=torch.int16, device=images.device)
        for channel in range(3):
            torch.index_select(t["levels"][channel], 0, index, out=out[channel])
        return out.view(3, len(images), -1).transpose(0, 1).float()

    def lab(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, N) uint8 sRGB → (B, 3, N) float32 L*a*b*, equal to OpenCV's float conversion of ``images / 255``."""
        t = self.tables(images.device)
        return self.levels(images).mul_(t["level_scale"][:, None]).add_(t["level_shift"][:, None])

    def levels_to_uint8(self, levels: torch.Tensor, lab_gain: torch.Tensor, lab_bias: torch.Tensor) -> torch.Tensor:
        """uint8 sRGB of the L*a*b* ``lab_gain * (level_scale * levels + level_shift) + lab_bias`` per tile.

        Args:
            levels: (B, 3, N) levels from :meth:`levels`.
            lab_gain: (B, 3) per tile and channel.
            lab_bias: (B, 3) per tile and channel.

        Linear RGB is clipped to [0, 1], encoded and rounded half up (:func:`srgb_encoding_table`).
        """
        t = self.tables(levels.device)
        gain = lab_gain * t["level_scale"]
        bias = lab_gain * t["level_shift"] + lab_bias - t["lab_offset"]
        to_f = t["f_from_lab"]
        f = torch.baddbmm((bias @ to_f.T)[:, :, None], to_f * gain[:, None, :], levels)
        # linear light in encoding steps, + 0.5 (round to the nearest step), from f^-1 without its offset
        to_rgb = t["to_rgb"].expand(len(levels), 3, 3)
        steps = torch.baddbmm(t["rgb_offset"].expand(len(levels), 3, 1), to_rgb, cie_f_inverse(f))
        index = steps.clamp_(0.5, ENCODE_STEPS + 0.5).to(torch.int32).view(-1)
        return t["encode"].index_select(0, index).view(levels.shape)
