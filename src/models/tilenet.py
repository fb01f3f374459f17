"""TileNet: input scaling → backbone → (concatenate clinical inputs) → hidden layers → one head per outcome."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from src.models.scaling import backbone_input_stats


def feature_width(backbone: nn.Module) -> int:
    """Width of a backbone's output features (``num_features`` as timm, or ``out_features``)."""
    for attribute in ("num_features", "out_features", "feature_dim"):
        width = getattr(backbone, attribute, None)
        if isinstance(width, int):
            return width
    raise AttributeError(f"{type(backbone).__name__} must expose its output width as `num_features` or `out_features`")


class TileNet(nn.Module):
    """The tile model. It takes uint8 tiles and scales them itself, with its backbone's mean and std.

    The scaling is ``(image / 255 - input_mean) / input_std`` per channel, where ``input_mean`` and
    ``input_std`` are the backbone's attributes of those names (3 floats in [0, 1] units; see
    ``src.models.scaling``), 0.5 and 0.5 (tiles in [-1, 1]) for a backbone that declares none. They are
    buffers, so every checkpoint's state dict holds them.

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

    backbone: nn.Module | None
    input_mean: torch.Tensor
    input_std: torch.Tensor
    output_mean: torch.Tensor
    output_scale: torch.Tensor

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
            mean, std = backbone_input_stats(backbone)
            self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
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

    def input_stats(self) -> dict[str, list[float]] | None:
        """The input scaling, ``{"mean": [r, g, b], "std": [r, g, b]}`` in [0, 1] units; ``None`` if ``drop_images``."""
        if self.drop_images:
            return None
        return {"mean": self.input_mean.flatten().tolist(), "std": self.input_std.flatten().tolist()}

    def scale(self, image: torch.Tensor) -> torch.Tensor:
        """Scale a uint8 (batch, 3, H, W) tile batch for the backbone: ``(image / 255 - mean) / std``.

        Raises:
            TypeError: the images are not uint8 (e.g. already scaled floats).
        """
        if image.dtype != torch.uint8:
            raise TypeError(
                f"TileNet takes uint8 (batch, 3, H, W) tiles in 0-255 and scales them itself; got {image.dtype}"
            )
        # the buffers' dtype: float32, or half/bf16 when the whole module was cast (precision=16-true)
        return (image.to(self.input_mean.dtype) / 255 - self.input_mean) / self.input_std

    def forward(
        self, image: torch.Tensor | None, clinical: torch.Tensor | None = None, *, scaled: bool = False
    ) -> list[torch.Tensor]:
        """Return one logit/score tensor per outcome, each (batch, outcome_size).

        Args:
            image: uint8 (batch, 3, H, W) tiles, as read (after stain normalization and augmentation);
                not read when ``drop_images``.
            clinical: (batch, n_clinical) encoded clinical inputs, or ``None``.
            scaled: ``image`` is already :meth:`scale`'d (training's device-side transform does it on the
                batch, ``src.data.transforms.BatchTransform``).
        """
        if self.drop_images:
            features = clinical
        else:
            assert self.backbone is not None and image is not None  # both given unless drop_images
            features = self.backbone(image if scaled else self.scale(image))
            if clinical is not None and clinical.shape[-1]:
                features = torch.cat([features, clinical.to(features.dtype)], dim=1)
        features = self.hidden(self.dropout(features))
        return [
            head(features) * scale + mean
            for head, mean, scale in zip(self.heads, self.output_mean, self.output_scale, strict=True)
        ]
