"""Reinhard colour transfer (Reinhard et al. 2001): match each L*a*b* channel's mean and sd to a target."""

from __future__ import annotations

import torch

from src.data.normalizers.base import StainNormalizer
from src.data.normalizers.color import LabSpace, lab_to_rgb, rgb_to_lab


class Reinhard(StainNormalizer):
    """Reinhard normalization in CIE L*a*b* (L 0-100).

    Each tile's L*, a*, b* channels are standardised with the tile's own mean and sd, then rescaled to
    the target's (fitted on all pixels of the reference tile or of the sampled training tiles).
    Stain augmentation (``n``) shifts each target mean by ``N(0, augment_sd)`` target sds and scales
    each target sd by ``exp(N(0, augment_sd))``.
    """

    method = "reinhard"
    cpu_chunk = 1  # measured on one core (benchmarks/stain_normalizers.py)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lab = LabSpace()

    def target_stats(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-channel L*a*b* means and sds of the target pixels."""
        lab = rgb_to_lab(pixels)
        return {"means": lab.mean(0), "stds": lab.std(0, unbiased=False)}

    def apply(self, pixels: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        """Match the pixels' L*a*b* means and sds to the target's (one tile, OpenCV)."""
        lab = rgb_to_lab(pixels)
        mean, sd = lab.mean(0), lab.std(0, unbiased=False).clamp_min(1e-3)
        return lab_to_rgb((lab - mean) / sd * target["stds"] + target["means"])

    def apply_batch(self, images: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        """Batched :meth:`apply` on (B, 3, N) uint8 pixels (OpenCV's L*a*b* levels, see ``LabSpace``).

        With ``Lab = s * level + h`` per channel, the tile's mean and sd are ``s * mean(level) + h`` and
        ``s * sd(level)``, and the result is ``gain * s * (level - mean(level)) + target mean``.
        """
        tables = self.lab.tables(images.device)
        levels = self.lab.levels(images)
        mean = levels.mean(dim=-1)  # (B, 3)
        sd = torch.linalg.vector_norm(levels - mean[:, :, None], dim=-1) / levels.shape[-1] ** 0.5
        gain = target["stds"] / (sd * tables["level_scale"]).clamp_min(1e-3)
        tile_mean = tables["level_scale"] * mean + tables["level_shift"]
        return self.lab.levels_to_uint8(levels, gain, target["means"] - gain * tile_mean)

    def perturb(
        self, target: dict[str, torch.Tensor], n: int, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """``n`` randomly perturbed targets (stain augmentation), stacked."""
        noise = torch.randn(n, 2, 3, generator=generator) * self.augment_sd
        return {
            "means": target["means"] + noise[:, 0] * target["stds"],
            "stds": target["stds"] * torch.exp(noise[:, 1]),
        }
