"""Example custom backbone, to copy when bringing your own architecture (``conf/model/custom_example.yaml``).

``model.backbone._target_`` may name any callable returning an ``nn.Module`` that

- takes a float image batch (batch, 3, tile_px, tile_px), scaled to [-1, 1], and returns (batch, width)
  features (pool inside the module: no classifier, no softmax);
- exposes that width as an int attribute ``num_features`` (as timm models do) or ``out_features``.

TileNet then concatenates the clinical inputs, adds the hidden layers and one head per outcome.
Everything under ``model.backbone`` other than ``_target_`` is passed to the callable as keyword
arguments, so any of them can be changed from the command line (``model.backbone.width=64``).
"""

from __future__ import annotations

from torch import nn


def small_cnn(width: int = 32, depth: int = 3, weights_path: str | None = None) -> nn.Module:
    """A small convolutional feature extractor: ``depth`` stride-2 conv blocks, then global average pooling.

    Args:
        width: Channels of the first block (doubling at each block).
        depth: Number of conv blocks.
        weights_path: Optional local state dict (or one of our checkpoints) to start from.

    Returns:
        A module mapping (batch, 3, H, W) images to (batch, ``out_features``) features.
    """
    layers: list[nn.Module] = []
    channels = 3
    for i in range(depth):
        out = width * 2**i
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = nn.Sequential(*layers)
    model.out_features = channels  # the feature width TileNet reads
    if weights_path:
        from src.models.backbone import load_backbone_weights

        load_backbone_weights(model, weights_path)
    return model
