"""What every MIL model shares: the contract, the tile embedding, clinical fusion after pooling, the heads.

A MIL model is any ``nn.Module`` built as ``model(n_features=…, outcome_sizes=…, n_clinical=…, output_mean=…,
output_scale=…, **its own keyword arguments)`` whose ``forward(features, mask, clinical=None,
return_attention=False)`` maps float (batch, tiles, n_features) tile features and a bool (batch, tiles) mask
(True = a real tile, False = padding) to one (batch, outcome_size) tensor per outcome; with
``return_attention=True`` it returns ``(outputs, attention)``, attention (batch, tiles) summing to 1 over each
bag's real tiles and 0 on padding. Padding must change no output.

Subclass :class:`MilModel` (training and predict.py recognise a MIL net by it): it builds the tile embedding
and the heads and runs them, so a new model writes only its pooling (:meth:`MilModel.pool`, and
:meth:`MilModel.build_pooling` when the pooling has layers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the tiles axis (last) of ``scores`` (batch, tiles), 0 where ``mask`` is False."""
    scores = scores.float().masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)  # a bag without real tiles: all zeros


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tiles of (batch, tiles, width) ``values``."""
    weights = mask.to(values.dtype).unsqueeze(-1)
    return (values * weights).sum(1) / weights.sum(1).clamp_min(1)


class MilHeads(nn.Module):
    """Pooled bag embedding (+ clinical inputs) → dropout → one linear head per outcome.

    Args:
        width: Width of the pooled bag embedding.
        outcome_sizes: Output width of each outcome head.
        n_clinical: Width of the clinical vector concatenated after pooling.
        dropout: Dropout on the fused vector.
        output_mean: Per outcome, added to the head's output (linear outcomes: the training mean).
        output_scale: Per outcome, multiplies the head's output first (linear outcomes: the training sd).
    """

    output_mean: torch.Tensor  # buffers, registered in __init__
    output_scale: torch.Tensor

    def __init__(
        self,
        width: int,
        outcome_sizes: Sequence[int],
        n_clinical: int = 0,
        dropout: float = 0.0,
        output_mean: Sequence[float] | None = None,
        output_scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        n = len(outcome_sizes)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(width + n_clinical, size) for size in outcome_sizes)
        self.register_buffer("output_mean", torch.tensor(list(output_mean or [0.0] * n), dtype=torch.float32))
        self.register_buffer("output_scale", torch.tensor(list(output_scale or [1.0] * n), dtype=torch.float32))

    def forward(self, pooled: torch.Tensor, clinical: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One (batch, size) output per outcome."""
        if clinical is not None and clinical.shape[-1]:
            pooled = torch.cat([pooled, clinical.to(pooled.dtype)], dim=1)
        pooled = self.dropout(pooled)
        return [
            head(pooled) * scale + mean
            for head, mean, scale in zip(self.heads, self.output_mean, self.output_scale, strict=True)
        ]


class MilModel(nn.Module, ABC):
    """Base class of the shipped MIL models: tile embedding → pooling → heads; a subclass writes the pooling.

    The base builds, in this order (the order in which the layers draw their initial weights from the seed):
    ``embed`` (Linear(n_features, hidden_width) → ReLU → Dropout, the dropout only with
    :attr:`embed_dropout`), the subclass's pooling layers (:meth:`build_pooling`), then ``heads``
    (:class:`MilHeads`). :meth:`forward` embeds the tiles, pools them (:meth:`pool`) and applies the heads.
    A subclass with hyper-parameters of its own takes them, and ``**kwargs`` for these, sets them as attributes
    and calls ``super().__init__(**kwargs)`` (:meth:`build_pooling` reads them); the config is checked against
    its names and these (``src.config.signatures`` follows ``**kwargs`` handed to the parent).

    Args:
        n_features: Width of the tile features.
        outcome_sizes: Output width of each outcome head.
        n_clinical: Width of the clinical inputs fused after pooling.
        hidden_width: Tile embedding width.
        dropout: Dropout after the tile embedding (with :attr:`embed_dropout`) and on the fused bag vector.
        output_mean: Per outcome head offset (see :class:`MilHeads`).
        output_scale: Per outcome head scale.
        drop_images: Must be false (a MIL model reads tile features; use a tile model for clinical-only runs).
    """

    embed_dropout: bool = True  # Dropout after the tile embedding's ReLU

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
        super().__init__()
        if drop_images:
            raise ValueError("MIL models need tile features: model.drop_images=true is for tile models only")
        self.hidden_width, self.outcome_sizes = hidden_width, list(outcome_sizes)
        layers = [nn.Linear(n_features, hidden_width), nn.ReLU()]
        if self.embed_dropout:
            layers.append(nn.Dropout(dropout))
        self.embed = nn.Sequential(*layers)
        self.build_pooling(hidden_width)
        self.heads = MilHeads(hidden_width, outcome_sizes, n_clinical, dropout, output_mean, output_scale)

    def build_pooling(self, width: int) -> None:
        """Build the pooling's layers (as attributes) over tile embeddings of ``width``; none by default."""

    def input_stats(self) -> None:
        """MIL models take features, not images: no input scaling (params.json ``input_stats`` is null)."""
        return None

    @abstractmethod
    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, tiles, width) tile embeddings + mask → (batch, width) bag embedding, (batch, tiles) attention.

        The attention sums to 1 over each bag's real tiles and is 0 on padding (None: the model has none).
        """

    def forward(
        self,
        features: torch.Tensor,
        mask: torch.Tensor | None = None,
        clinical: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], torch.Tensor | None]:
        """One output per outcome (and the attention over tiles with ``return_attention``)."""
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        pooled, attention = self.pool(self.embed(features), mask)
        outputs = self.heads(pooled, clinical)
        return (outputs, attention) if return_attention else outputs
