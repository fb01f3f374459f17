"""TileNet: backbone → (concatenate clinical inputs) → hidden layers → one head per outcome."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def feature_width(backbone: nn.Module) -> int:
    """Width of a backbone's output features (``num_features`` as timm, or ``out_features``)."""
    for attribute in ("num_features", "out_features", "feature_dim"):
        width = getattr(backbone, attribute, None)
        if isinstance(width, int):
            return width
    raise AttributeError(f"{type(backbone).__name__} must expose its output width as `num_features` or `out_features`")


class TileNet(nn.Module):
    """The tile model.

    Args:
        backbone: Image feature extractor returning (batch, width) features; ignored when
            ``drop_images``.
        outcome_sizes: Output width of each outcome head (classes, or 1 for linear / cox).
        n_clinical: Width of the clinical input vector concatenated after the backbone.
        hidden_layers: Fully connected blocks (Linear → ReLU → BatchNorm → Dropout) before the heads.
        hidden_layer_width: Width of each hidden block.
        dropout: Dropout on the merged features (so it acts even with no hidden layers) and in each block.
        drop_images: Train on the clinical inputs alone, reading no image.
        output_mean: Per outcome, added to the head's output (linear outcomes: the training mean, so the
            head starts at the mean); 0 for categorical and cox heads.
        output_scale: Per outcome, multiplies the head's output first (linear outcomes: the training sd).
            Both are saved in the state dict.
    """

    def __init__(
        self,
        backbone: nn.Module | None,
        outcome_sizes: Sequence[int],
        n_clinical: int = 0,
        hidden_layers: int = 0,
        hidden_layer_width: int = 500,
        dropout: float = 0.0,
        drop_images: bool = False,
        output_mean: Sequence[float] | None = None,
        output_scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.drop_images = drop_images
        if drop_images:
            if n_clinical == 0:
                raise ValueError("drop_images=true needs clinical inputs (input_header)")
            self.backbone = None
            width = n_clinical
        else:
            if backbone is None:
                raise ValueError("TileNet needs a backbone unless drop_images=true")
            self.backbone = backbone
            width = feature_width(backbone) + n_clinical
        self.dropout = nn.Dropout(dropout)
        blocks: list[nn.Module] = []
        for _ in range(hidden_layers):
            blocks += [nn.Linear(width, hidden_layer_width), nn.ReLU(), nn.BatchNorm1d(hidden_layer_width)]
            blocks.append(nn.Dropout(dropout))
            width = hidden_layer_width
        self.hidden = nn.Sequential(*blocks)
        self.heads = nn.ModuleList(nn.Linear(width, size) for size in outcome_sizes)
        n = len(outcome_sizes)
        self.register_buffer("output_mean", torch.tensor(list(output_mean or [0.0] * n), dtype=torch.float32))
        self.register_buffer("output_scale", torch.tensor(list(output_scale or [1.0] * n), dtype=torch.float32))
        if len(self.output_mean) != n or len(self.output_scale) != n:
            raise ValueError(f"output_mean and output_scale need one value per outcome ({n})")

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Return one logit/score tensor per outcome, each (batch, outcome_size)."""
        if self.drop_images:
            features = clinical
        else:
            features = self.backbone(image)
            if clinical is not None and clinical.shape[-1]:
                features = torch.cat([features, clinical.to(features.dtype)], dim=1)
        features = self.hidden(self.dropout(features))
        return [
            head(features) * scale + mean
            for head, mean, scale in zip(self.heads, self.output_mean, self.output_scale, strict=True)
        ]
