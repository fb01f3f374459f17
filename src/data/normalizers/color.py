"""sRGB ↔ CIE L*a*b* (D65, L in 0-100): OpenCV's float conversion for fits, the same formulas batched in torch.

The fit (pooled pixels, once per model) and the one-tile reference use OpenCV, so saved fits are unchanged.
Batched tiles use :class:`LabSpace`: the same formulas in torch, on any device, with the sRGB decoding of
uint8 tiles as a 256-entry table, in-place passes and no masks. OpenCV
interpolates its float RGB → L*a*b* in a 3D table (errors up to ~0.3 L*a*b* units); the torch formulas are
exact, so the two can differ by that much before normalization.
"""

from __future__ import annotations

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
_T0 = 0.008856  # CIE ε: f(t) is linear below it
_F0 = 0.206893  # f(ε)
_SRGB_T0 = 0.0031308  # linear light below which sRGB is linear


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


def srgb_to_linear(values: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] → linear light."""
    return torch.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


# Each curve below has a linear toe joining it continuously; ``curve(max(x, x0)) + slope * (min(x, x0) - x0)``
# is the curve above x0 and the toe below it, with no mask (same cost on any device, no data-dependent branch).


def cie_f(t: torch.Tensor) -> torch.Tensor:
    """The CIE L*a*b* function ``f``: cube root above ε, ``7.787 t + 16/116`` below (``t`` is not modified)."""
    root = t.clamp_min(_T0).log_().div_(3).exp_()
    return root.add_(t.clamp_max(_T0), alpha=7.787).sub_(7.787 * _T0)


def cie_f_inverse(f: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`cie_f` (``f`` is not modified)."""
    top = f.clamp_min(_F0)
    cube = top.mul(top).mul_(top)
    return cube.add_(f.clamp_max(_F0), alpha=1 / 7.787).sub_(_F0 / 7.787)


def linear_to_srgb255(values: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] → sRGB in 0-255 (``exp(log(x) / 2.4)``: cheaper than ``pow`` on a CPU)."""
    curve = values.clamp_min(_SRGB_T0).log_().div_(2.4).exp_().mul_(1.055 * 255).sub_(0.055 * 255)
    return curve.add_(values.clamp_max(_SRGB_T0), alpha=12.92 * 255).sub_(12.92 * 255 * _SRGB_T0)


class LabSpace:
    """Batched sRGB ↔ CIE L*a*b* for (B, 3, N) tiles on the tiles' device (tables cached per device).

    L*a*b* is affine in ``f = (f(X/Xn), f(Y), f(Z/Zn))`` (:attr:`tables` ``lab_from_f``, ``lab_offset``),
    so a normalizer that is affine in L*a*b* can apply its map in ``f`` (Reinhard: one 3x3 map per tile).
    """

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Decoding table and matrices on ``device``."""
        key = str(device)
        if key not in self._tables:
            white = torch.tensor(WHITE, dtype=torch.float64)
            tables = {
                "decode": srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255),
                "to_xyz": torch.tensor(RGB_TO_XYZ, dtype=torch.float64) / white[:, None],
                "to_rgb": torch.tensor(XYZ_TO_RGB, dtype=torch.float64) * white[None, :],
                "lab_from_f": torch.tensor(LAB_FROM_F, dtype=torch.float64),
                "lab_offset": torch.tensor(LAB_OFFSET, dtype=torch.float64),
            }
            tables["f_from_lab"] = torch.linalg.inv(tables["lab_from_f"])
            self._tables[key] = {k: v.to(device=device, dtype=torch.float32) for k, v in tables.items()}
        return self._tables[key]

    def f_space(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, N) uint8 sRGB → (B, 3, N) ``f`` values."""
        t = self.tables(images.device)
        linear = torch.index_select(t["decode"], 0, images.reshape(-1).int()).view(images.shape)
        return cie_f(torch.matmul(t["to_xyz"], linear))

    def f_to_uint8(self, f: torch.Tensor) -> torch.Tensor:
        """(B, 3, N) ``f`` values → uint8 sRGB (linear RGB clipped to [0, 1], encoded, rounded)."""
        t = self.tables(f.device)
        linear = torch.matmul(t["to_rgb"], cie_f_inverse(f)).clamp_(0, 1)
        return linear_to_srgb255(linear).add_(0.5).to(torch.uint8)  # +0.5 then truncate: round half up
