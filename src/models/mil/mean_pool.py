"""Mean-pooling MIL baseline: an MLP on every tile, averaged over the bag's real tiles, then the heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from src.models.mil.base import MilHeads, MilModel, masked_mean


class MeanPoolMLP(MilModel):
    """Tile MLP → mean over real tiles → heads (``model=mean_pool``). Its "attention" is uniform.

    Args:
        n_features: Width of the tile features.
        outcome_sizes: Output width of each outcome head.
        n_clinical: Width of the clinical inputs fused after pooling.
        hidden_width: Width of the tile MLP.
        dropout: Dropout after the tile MLP and on the fused bag vector.
        output_mean: Per outcome head offset.
        output_scale: Per outcome head scale.
        drop_images: Must be false.
    """

    def __init__(
        self,
        n_features: int,
        outcome_sizes: Sequence[int],
        n_clinical: int = 0,
        hidden_width: int = 256,
        dropout: float = 0.25,
        output_mean: Sequence[float] | None = None,
        output_scale: Sequence[float] | None = None,
        drop_images: bool = False,
    ) -> None:
        super().__init__(drop_images)
        self.embed = nn.Sequential(nn.Linear(n_features, hidden_width), nn.ReLU(), nn.Dropout(dropout))
        self.heads = MilHeads(hidden_width, outcome_sizes, n_clinical, dropout, output_mean, output_scale)

    def pool(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the tile embeddings over real tiles; uniform attention 1 / n_real."""
        attention = mask.float() / mask.float().sum(1, keepdim=True).clamp_min(1)
        return masked_mean(self.embed(features), mask), attention
