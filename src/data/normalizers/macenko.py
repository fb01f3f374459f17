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
    cpu_chunk = 4  # measured on one core (benchmarks/stain_normalizers.py)

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

    def apply_batch(self, images: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        """Batched :meth:`apply` on (B, 3, N) uint8 pixels (same stain matrices, percentiles and rescaling)."""
        table = self._od_table(images.device)
        od = torch.index_select(table, 0, images.reshape(-1).int()).view(images.shape)  # (B, 3, N)
        stained = od.amin(dim=1) > self.beta  # (B, N)
        count = stained.sum(dim=1)
        enough = count >= self.min_pixels
        masked = od * stained[:, None]
        mean = masked.sum(-1) / count.clamp_min(1)[:, None]  # (B, 3)
        moments = (masked @ od.transpose(1, 2)).double() / count.clamp_min(1)[:, None, None]
        scatter = moments - mean.double()[:, :, None] * mean.double()[:, None, :]
        cov = scatter * (count / (count - 1).clamp_min(1))[:, None, None]  # unbiased, as torch.cov
        cov = torch.where(enough[:, None, None], cov, torch.eye(3, dtype=cov.dtype, device=cov.device))
        _, vectors = torch.linalg.eigh(cov)
        plane = vectors[:, :, [2, 1]].float()  # (B, 3, 2), largest eigenvector first
        plane[:, :, 0] *= torch.where(plane[:, :, 0].sum(1) < 0, -1.0, 1.0)[:, None]
        projected = plane.transpose(1, 2) @ od  # (B, 2, N)
        angles = torch.atan2(projected[:, 1], projected[:, 0])
        low = _masked_rank(angles, stained, count, self.alpha / 100)
        high = _masked_rank(angles, stained, count, 1 - self.alpha / 100)
        low, high = torch.where(enough, low, 0.0), torch.where(enough, high, 0.0)  # (unstained tiles: kept as read)
        v_low = plane @ torch.stack([torch.cos(low), torch.sin(low)], dim=1)[:, :, None]
        v_high = plane @ torch.stack([torch.cos(high), torch.sin(high)], dim=1)[:, :, None]
        first = (v_low[:, 0] > v_high[:, 0])[:, :, None]  # haematoxylin: the larger red OD
        matrix = torch.cat([torch.where(first, v_low, v_high), torch.where(first, v_high, v_low)], dim=2)
        matrix = matrix * torch.where(matrix.sum(1, keepdim=True) < 0, -1.0, 1.0)
        matrix = matrix / matrix.norm(dim=1, keepdim=True)
        conc = torch.linalg.pinv(matrix) @ od  # (B, 2, N)
        max_conc = _quantile(conc, 0.99).clamp_min(1e-6)
        conc = conc.clamp_min_(0).mul_((target["max_conc"] / max_conc)[:, :, None])
        out = torch.bmm(target["stain_matrix"], conc).neg_().exp_().clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        return torch.where(enough[:, None, None], out, images)

    def _od_table(self, device: torch.device) -> torch.Tensor:
        """Optical density of each uint8 level (as :meth:`optical_density` computes it), cached per device."""
        tables = self.__dict__.setdefault("_od_tables", {})
        if str(device) not in tables:
            levels = torch.arange(256, dtype=torch.float32) / 255.0
            tables[str(device)] = self.optical_density(levels).to(device)
        return tables[str(device)]

    def perturb(
        self, target: dict[str, torch.Tensor], n: int, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """``n`` randomly perturbed targets (stain augmentation), stacked."""
        matrix = target["stain_matrix"] + torch.randn(n, 3, 2, generator=generator) * self.augment_sd / 5
        matrix = matrix.clamp_min(1e-3)
        return {
            "stain_matrix": matrix / matrix.norm(dim=1, keepdim=True),
            "max_conc": target["max_conc"] * torch.exp(torch.randn(n, 2, generator=generator) * self.augment_sd),
        }


def _masked_rank(values: torch.Tensor, mask: torch.Tensor, count: torch.Tensor, q: float) -> torch.Tensor:
    """Per row, the nearest-rank ``q`` quantile of ``values[mask]`` (as :func:`_quantile` on that row's subset).

    Found with one ``topk`` of the few extreme values rather than a sort of every row.
    """
    rank = torch.round(q * (count - 1).clamp_min(0)).long() + 1  # 1-based, ascending, among the masked values
    rank = torch.minimum(rank, count.clamp_min(1))
    if q <= 0.5:
        depth, key = rank, torch.where(mask, values, torch.inf)
        extreme = torch.topk(key, int(depth.max()), dim=1, largest=False).values
    else:
        depth, key = count.clamp_min(1) - rank + 1, torch.where(mask, values, -torch.inf)
        extreme = torch.topk(key, int(depth.max()), dim=1, largest=True).values
    return extreme.gather(1, (depth - 1)[:, None])[:, 0]


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile along the last dimension (nearest rank: a partial sort, faster than torch.quantile)."""
    n = values.shape[-1]
    return values.kthvalue(min(n, max(1, round(q * (n - 1)) + 1)), dim=-1).values
