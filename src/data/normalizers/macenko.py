"""Macenko stain normalization (Macenko et al. 2009): H&E stain vectors from the optical-density plane."""

from __future__ import annotations

import torch

from src.data.normalizers.base import StainNormalizer


class Macenko(StainNormalizer):
    """Macenko normalization.

    Pixels become optical densities ``OD = -ln(I/255)``; pixels with any channel below ``beta`` OD
    (background) are ignored. The two main eigenvectors of the OD covariance span the stain plane; the
    ``alpha`` and ``100 - alpha`` percentiles of the pixels' angles in that plane give the haematoxylin
    and eosin vectors (haematoxylin first: the one with the larger red OD). Each tile's stain
    concentrations (least squares) are rescaled so that their 99th percentiles match the target's, and
    the tile is rebuilt with the target's stain vectors. A tile with fewer than ``min_pixels`` stained
    pixels is returned unchanged.

    Args:
        alpha: Angle percentile for the extreme stain vectors.
        beta: Optical-density threshold for background.
        min_pixels: Stained pixels a tile needs to be normalized.
        **kwargs: ``source``, ``fit_tiles``, ``augment_sd`` (see :class:`StainNormalizer`). Stain
            augmentation (``n``) scales the target concentrations by ``exp(N(0, augment_sd))`` and jitters
            the stain vectors by ``N(0, augment_sd / 5)`` before renormalising them.
    """

    method = "macenko"

    def __init__(self, alpha: float = 1.0, beta: float = 0.15, min_pixels: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.min_pixels = int(min_pixels)

    def params(self) -> dict:
        """Constructor settings (saved with the fit)."""
        return {**super().params(), "alpha": self.alpha, "beta": self.beta, "min_pixels": self.min_pixels}

    @staticmethod
    def optical_density(pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3) RGB in [0, 1] → optical density (0 for white)."""
        return -torch.log((pixels * 255).clamp_min(1.0) / 255.0)

    def stain_matrix(self, od: torch.Tensor) -> torch.Tensor | None:
        """(3, 2) unit H and E vectors of stained OD pixels, or ``None`` when too few are stained."""
        stained = od[od.amin(dim=1) > self.beta]
        if len(stained) < self.min_pixels:
            return None
        _, vectors = torch.linalg.eigh(torch.cov(stained.T.double()))
        plane = vectors[:, [2, 1]].float()  # largest eigenvector first
        if plane[:, 0].sum() < 0:
            plane[:, 0] = -plane[:, 0]
        projected = stained @ plane
        angles = torch.atan2(projected[:, 1], projected[:, 0])
        low, high = _quantile(angles, self.alpha / 100), _quantile(angles, 1 - self.alpha / 100)
        v_low = plane @ torch.stack([torch.cos(low), torch.sin(low)])
        v_high = plane @ torch.stack([torch.cos(high), torch.sin(high)])
        pair = [v_low, v_high] if v_low[0] > v_high[0] else [v_high, v_low]
        matrix = torch.stack(pair, dim=1)
        matrix = matrix * torch.where(matrix.sum(0) < 0, -1.0, 1.0)
        return matrix / matrix.norm(dim=0, keepdim=True)

    @staticmethod
    def concentrations(od: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """(2, n) least-squares stain concentrations of (n, 3) OD pixels."""
        return torch.linalg.pinv(matrix) @ od.T

    def target_stats(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stain matrix and 99th-percentile concentrations of the target pixels."""
        od = self.optical_density(pixels)
        matrix = self.stain_matrix(od)
        if matrix is None:
            raise ValueError(f"Macenko fit: fewer than {self.min_pixels} stained pixels (OD > {self.beta})")
        max_conc = _quantile(self.concentrations(od, matrix), 0.99)
        return {"stain_matrix": matrix, "max_conc": max_conc}

    def apply(self, pixels: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        """Re-express the pixels' stain concentrations with the target's stain matrix."""
        od = self.optical_density(pixels)
        matrix = self.stain_matrix(od)
        if matrix is None:
            return pixels
        conc = self.concentrations(od, matrix)
        max_conc = _quantile(conc, 0.99).clamp_min(1e-6)
        conc = conc.clamp_min(0) * (target["max_conc"] / max_conc)[:, None]
        return torch.exp(-(target["stain_matrix"] @ conc)).T

    def perturb(self, target: dict[str, torch.Tensor], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """A randomly perturbed target (stain augmentation)."""
        matrix = target["stain_matrix"] + torch.randn(3, 2, generator=generator) * self.augment_sd / 5
        matrix = matrix.clamp_min(1e-3)
        return {
            "stain_matrix": matrix / matrix.norm(dim=0, keepdim=True),
            "max_conc": target["max_conc"] * torch.exp(torch.randn(2, generator=generator) * self.augment_sd),
        }


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile along the last dimension (nearest rank: a partial sort, faster than torch.quantile)."""
    n = values.shape[-1]
    return values.kthvalue(min(n, max(1, round(q * (n - 1)) + 1)), dim=-1).values
