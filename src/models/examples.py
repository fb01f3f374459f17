"""Example custom backbone, to copy when bringing your own architecture (``conf/model/custom_example.yaml``).

``model.backbone._target_`` may name any callable returning an ``nn.Module`` that

- takes a float image batch (batch, 3, tile_px, tile_px), already scaled by TileNet, and returns
  (batch, width) features (pool inside the module: no classifier, no softmax);
- exposes that width as an int attribute ``num_features`` (as timm models do) or ``out_features``;
- may declare the scaling it expects as attributes ``input_mean`` and ``input_std``: 3 floats each (R, G, B)
  in [0, 1] units, e.g. ImageNet's ``model.input_mean = (0.485, 0.456, 0.406)`` and
  ``model.input_std = (0.229, 0.224, 0.225)``. TileNet takes uint8 tiles and feeds the backbone
  ``(image / 255 - input_mean) / input_std``; a backbone declaring neither gets 0.5 and 0.5 (tiles in [-1, 1]).
  TileNet saves them in every checkpoint (buffers ``net.input_mean``/``net.input_std``).

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
        A module mapping (batch, 3, H, W) scaled images to (batch, ``out_features``) features.
    """
    layers: list[nn.Module] = []
    channels = 3
    for i in range(depth):
        out = width * 2**i
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = nn.Sequential(*layers)
    # the feature width TileNet reads (torch types Module attributes as Tensor | Module; plain values work)
    model.out_features = channels  # type: ignore[assignment]
    if weights_path:
        from src.models.backbone import load_backbone_weights

        saved = load_backbone_weights(model, weights_path)  # one of our checkpoints gives its input scaling
        if saved is not None:  # keep the scaling these weights were trained with (default: [-1, 1])
            model.input_mean, model.input_std = saved  # type: ignore[assignment]  # plain tuples, as timm's
    return model
