"""What a loaded model takes, and a clear error when it is given something else.

A checkpoint holds one of two kinds of model: a *tile model* (``TileNet``: uint8 ``(batch, 3, tile_px, tile_px)``
tiles, one prediction per tile) or a *MIL model* (trained with ``dataset=features``: one bag of
``(n_tiles, n_features)`` float tile features from the encoder its bags were made with, one prediction per
bag). :func:`check_tiles` and :func:`check_bag` run before the network, so that a MIL model given tiles, a tile
model given a bag, or a bag from another encoder (another feature width) stops with what the model is, what it
takes and what it got, instead of torch's shape error from deep inside the network.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from src.models.mil.base import MilModel


def is_mil_model(net: torch.nn.Module) -> bool:
    """Whether ``net`` is a MIL model (takes bags of tile features)."""
    return isinstance(net, MilModel)


def tile_px(params: dict[str, Any]) -> int | None:
    """The tile side (px) a tile model was trained on, from its params (None: not recorded)."""
    settings = params.get("tile_settings") or {}
    value = settings.get("tile_px", params.get("tile_px"))
    return int(value) if isinstance(value, int | float) else None


def n_features(params: dict[str, Any]) -> int | None:
    """The feature width a MIL model was trained on, from its params (None: not recorded)."""
    value = (params.get("net_kwargs") or {}).get("n_features")
    return int(value) if isinstance(value, int | float) else None


def model_kind(net: torch.nn.Module, params: dict[str, Any]) -> str:
    """The model in words: ``a MIL model (AttentionMil) that takes one bag of (n_tiles, 192) tile features``."""
    name = type(net).__name__
    if is_mil_model(net):
        width = n_features(params)
        encoder = ((params.get("feature_bags") or {}).get("encoder") or {}).get("name")
        source = f" from encoder {encoder}" if encoder else ""
        return (
            f"a MIL model ({name}) that takes one bag of (n_tiles, {width or 'n_features'}) float tile features{source}"
        )
    if getattr(net, "drop_images", False):
        return f"a clinical-only tile model ({name}, drop_images) that reads no image"
    side = tile_px(params) or "tile_px"
    return f"a tile model ({name}) that takes uint8 (batch, 3, {side}, {side}) tiles"


def _got(value: Any) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__


def check_tiles(net: torch.nn.Module, params: dict[str, Any], images: Any, where: str = "predict()") -> None:
    """Raise unless ``images`` is what the tile model ``net`` takes.

    Args:
        net: The network.
        params: Its checkpoint's params (tile settings, feature width).
        images: What the caller passes as tiles.
        where: The function called, to name in the message.

    Raises:
        ValueError: ``net`` is a MIL model (use a bag), or ``images`` is not a uint8 ``(batch, 3, tile_px,
            tile_px)`` tensor (naming what it is).
    """
    kind = model_kind(net, params)
    if is_mil_model(net):
        raise ValueError(
            f"{where}: the checkpoint is {kind}, not tiles: use predict_bag(model, features) with the features "
            f"of one slide's tiles (a bag file's 'features', or src.inference.mil); got {_got(images)}"
        )
    if getattr(net, "drop_images", False):
        return
    side = tile_px(params)
    shape = tuple(images.shape) if isinstance(images, torch.Tensor) else None
    fits = (
        shape is not None
        and images.dtype == torch.uint8
        and len(shape) == 4
        and shape[1] == 3
        and (side is None or shape[2:] == (side, side))
    )
    if not fits:
        raise ValueError(
            f"{where}: the checkpoint is {kind}; got {_got(images)}. Give torch uint8 tiles in 0-255 (RGB, "
            "channels first; the model scales them itself), cut at the model's tile size (its tile_settings)"
        )


def check_bag(
    net: torch.nn.Module, params: dict[str, Any], features: Any, where: str = "predict_bag()"
) -> torch.Tensor:
    """The float32 ``(n_tiles, n_features)`` bag ``features``, after checking that the MIL model ``net`` takes it.

    Raises:
        ValueError: ``net`` is a tile model (use tiles), or ``features`` is not one non-empty 2-D bag of the
            model's feature width (naming the width it has and the one the model was trained on).
    """
    kind = model_kind(net, params)
    if not is_mil_model(net):
        raise ValueError(
            f"{where}: the checkpoint is {kind}, not a bag of features: use predict(model, images); "
            f"got {_got(features)}"
        )
    try:
        bag = torch.as_tensor(features, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{where}: the checkpoint is {kind}; got {_got(features)}, not numbers ({error})") from None
    width = n_features(params)
    if bag.ndim != 2 or not len(bag):
        raise ValueError(
            f"{where}: the checkpoint is {kind}; got {_got(features)}: give one slide's bag, a 2-D "
            "(n_tiles, n_features) array with at least one tile"
        )
    if width is not None and bag.shape[1] != width:
        raise ValueError(
            f"{where}: the checkpoint is {kind}, trained on {width}-wide features; this bag's features are "
            f"{bag.shape[1]} wide {tuple(bag.shape)}: they come from another encoder (make them with the one the "
            "model's bags were made with, its params' feature_bags)"
        )
    return bag
