"""Mean-pooling MIL baseline: an MLP on every tile, averaged over the bag's real tiles, then the heads."""

from __future__ import annotations

import torch

from src.models.mil.base import MilModel, masked_mean


class MeanPoolMLP(MilModel):
    """Tile MLP → mean over real tiles → heads (``model=mean_pool``). Its "attention" is uniform.

    Its arguments are :class:`~src.models.mil.base.MilModel`'s (``hidden_width``: width of the tile MLP).
    """

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the tile embeddings over real tiles; uniform attention 1 / n_real."""
        attention = mask.float() / mask.float().sum(1, keepdim=True).clamp_min(1)
        return masked_mean(h, mask), attention
