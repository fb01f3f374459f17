"""TransMIL (Shao et al., NeurIPS 2021), our own implementation.

A class token, two transformer layers and a pyramid position encoding (PPEG: 7×7, 5×5 and 3×3 depthwise
convolutions over the tokens laid on a square).

Differences from the paper, chosen for exactness with padded batches: attention is exact multi-head attention
(``nn.MultiheadAttention`` with a key padding mask; the paper uses the Nyström approximation), and the PPEG
lays out each bag's real tiles only (filled to a square by repeating its first tiles, as the paper), so
padding changes no output. Memory grows with tiles², so train with ``dataset.bag_size`` (512) and validate
big bags with ``dataset.max_val_bag_size`` if needed. The attention returned is the class token's attention
over the tiles in the last layer, averaged over heads and renormalised over the real tiles.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from src.models.mil.base import MilModel


class TransLayer(nn.Module):
    """Pre-norm multi-head self-attention with a residual connection."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (batch, n, width) and key padding mask (True = padding) → tokens, head-mean attention."""
        y = self.norm(x)
        out, weights = self.attention(y, y, y, key_padding_mask=padding, need_weights=True)
        return x + out, weights


class PPEG(nn.Module):
    """Pyramid position encoding generator over tiles laid out on a square grid."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(width, width, k, 1, k // 2, groups=width) for k in (7, 5, 3))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, width) tile tokens of one bag → (n, width), position-encoded."""
        n, width = tokens.shape
        side = math.ceil(math.sqrt(n))
        filled = torch.cat([tokens, tokens[: side * side - n]]) if side * side > n else tokens
        while len(filled) < side * side:  # fewer tiles than the fill needs: repeat again
            filled = torch.cat([filled, tokens[: side * side - len(filled)]])
        grid = filled.transpose(0, 1).reshape(1, width, side, side)
        grid = grid + sum(conv(grid) for conv in self.convs)
        return grid.reshape(width, side * side).transpose(0, 1)[:n]


class TransMIL(MilModel):
    """TransMIL (``model=transmil``).

    Args:
        heads: Attention heads.
        dropout: Dropout in the attention and on the fused bag vector.
        **kwargs: :class:`~src.models.mil.base.MilModel`'s other arguments (``hidden_width``: the token width).
    """

    embed_dropout = False  # the tile embedding is Linear → ReLU

    def __init__(self, heads: int = 8, dropout: float = 0.1, **kwargs: Any) -> None:
        self.n_heads, self.attention_dropout = heads, dropout  # read by build_pooling
        super().__init__(dropout=dropout, **kwargs)

    def build_pooling(self, width: int) -> None:
        """The class token, the two transformer layers with the PPEG between them, and the final norm."""
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.layer1 = TransLayer(width, self.n_heads, self.attention_dropout)
        self.ppeg = PPEG(width)
        self.layer2 = TransLayer(width, self.n_heads, self.attention_dropout)
        self.norm = nn.LayerNorm(width)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The class token after two layers; attention of the class token over the real tiles."""
        batch = len(h)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), h], dim=1)
        padding = torch.cat([mask.new_zeros(batch, 1), ~mask], dim=1)
        x, _ = self.layer1(x, padding)
        tiles = x[:, 1:].clone()
        for b in range(batch):  # each bag's real tiles only: padding never enters the convolutions
            tiles[b, mask[b]] = self.ppeg(x[b, 1:][mask[b]])
        x = torch.cat([x[:, :1], tiles], dim=1)
        x, weights = self.layer2(x, padding)
        attention = weights[:, 0, 1:].masked_fill(~mask, 0.0)
        attention = attention / attention.sum(1, keepdim=True).clamp_min(1e-12)
        return self.norm(x[:, 0]), attention
