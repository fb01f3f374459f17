"""Attention MIL with gated attention (Ilse, Tomczak & Welling, ICML 2018).

Tiles are embedded (Linear → ReLU → Dropout); the gated attention score of a tile is
``w · (tanh(V h) ⊙ sigmoid(U h))``; the bag embedding is the attention-weighted sum over the bag's real tiles.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from src.models.mil.base import MilModel, masked_softmax


class GatedAttention(nn.Module):
    """Gated attention scores: (batch, tiles, width) → (batch, tiles) raw scores.

    Args:
        width: Tile embedding width.
        attention_width: Width of the attention's hidden layer.
        dropout: Dropout inside the attention branches.
    """

    def __init__(self, width: int, attention_width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.value = nn.Sequential(nn.Linear(width, attention_width), nn.Tanh(), nn.Dropout(dropout))
        self.gate = nn.Sequential(nn.Linear(width, attention_width), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(attention_width, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Raw attention scores, before the masked softmax."""
        return self.score(self.value(h) * self.gate(h)).squeeze(-1)


class AttentionMIL(MilModel):
    """Gated-attention MIL (``model=attention_mil``).

    Args:
        attention_width: Width of the attention's hidden layer.
        **kwargs: :class:`~src.models.mil.base.MilModel`'s arguments (``dropout``: after the tile embedding and
            on the fused bag vector).
    """

    def __init__(self, attention_width: int = 128, **kwargs: Any) -> None:
        self.attention_width = attention_width  # read by build_pooling
        super().__init__(**kwargs)

    def build_pooling(self, width: int) -> None:
        """The gated attention over tile embeddings of ``width``."""
        self.attention = GatedAttention(width, self.attention_width)

    def attend(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, tiles) attention over the tile embeddings ``h``: sums to 1 over real tiles, 0 on padding."""
        return masked_softmax(self.attention(h), mask)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention-weighted sum of the tile embeddings; the attention sums to 1 over real tiles."""
        attention = self.attend(h, mask)
        return torch.einsum("bt,btw->bw", attention.to(h.dtype), h), attention
