"""Image backbones: any timm model, with local weights, partial freezing and its input scaling."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from src.models.scaling import DEFAULT_MEAN, DEFAULT_STD, Triple, check_input_stats
from src.models.weights_file import load_torch_file


def timm_backbone(
    name: str,
    pretrained: bool = False,
    weights_path: str | None = None,
    pooling: str = "avg",
    trainable_layers: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """A timm model without its classifier, returning pooled features of width ``num_features``.

    Args:
        name: Any ``timm.list_models()`` name, e.g. ``resnet18``, ``efficientnet_b0``.
        pretrained: Let timm fetch its weights. Nothing can be downloaded on air-gapped machines, so this
            defaults to false; use ``weights_path`` instead.
        weights_path: A local checkpoint (timm/torchvision state dict, or one of our ``.ckpt`` files), read
            with the weights-only unpickler (tensors and plain data only: a file holding code is refused);
            classifier weights in it are ignored.
        pooling: Global pooling where the backbone allows it: ``avg``, ``max``, ``avgmax`` (their mean) or
            ``catavgmax`` (both concatenated: twice the feature width) for CNNs; e.g. ``token``/``avg`` for
            timm ViTs. Pooling must give a vector per tile, so ``none``/empty is rejected.
        trainable_layers: Train only the last N stages of the backbone (0 = train everything). Frozen
            stages are fully frozen: their weights get no gradient and their BatchNorm statistics stay put.
        mean: Per-channel (R, G, B) mean in [0, 1] units that TileNet subtracts from the tiles.
        std: Per-channel std in [0, 1] units that TileNet divides by. Both ``None`` (the default): the
            scaling the loaded weights were trained with (the one saved in our ``.ckpt``, else timm's
            ``pretrained_cfg``); with no weights loaded, 0.5 and 0.5, which scale tiles to [-1, 1].
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``).

    Returns:
        The timm model, with ``num_features`` and the ``input_mean`` / ``input_std`` tuples TileNet reads.
    """
    if pooling in (None, "", "none"):
        raise ValueError(f"model.backbone.pooling={pooling!r}: the tile model needs pooled features (e.g. avg, max)")
    stats = check_input_stats(mean, std)  # before building the model: a bad value fails fast
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool=pooling, **kwargs)
    # TileNet reads `num_features` as the pooled width; catavgmax doubles it (timm: head_hidden_size).
    # torch types Module attributes as Tensor | Module (parameters, buffers, submodules); plain values work
    model.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)  # type: ignore[assignment, arg-type]
    saved = load_backbone_weights(model, weights_path) if weights_path else None
    if stats is None and (pretrained or weights_path):  # the scaling the loaded weights were trained with
        stats = saved or _pretrained_stats(model, name)
    model.input_mean, model.input_std = stats or (DEFAULT_MEAN, DEFAULT_STD)  # type: ignore[assignment]
    if trainable_layers:
        freeze_stages(model, trainable_layers)
    return model


#: Parameters a config key can give (by keyword).
KEYWORD_PARAMETERS = frozenset({inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY})
#: Arguments of timm's layers that timm_backbone (or timm itself) sets: not a node's key.
SET_BY_TIMM_BACKBONE = ("self", "model_name", "model_cls", "variant", "num_classes", "global_pool")


def timm_keywords(node: Mapping[str, Any]) -> list[str] | None:
    """Every key a ``timm_backbone`` node may hold: its own arguments and those its ``**kwargs`` reach in timm.

    Those are ``timm.create_model``'s and ``build_model_with_cfg``'s, and the ``__init__`` arguments of the model
    class that ``node["name"]`` builds (built on the meta device: no memory, no weights, milliseconds). None when
    that cannot be told (an unknown name, a class that takes ``**kwargs`` itself): then every key is taken, and
    building the backbone reports the problem.
    """
    name = node.get("name")
    if not isinstance(name, str):
        return None
    try:
        with torch.device("meta"):
            model_class = type(timm.create_model(name, pretrained=False, num_classes=0))
    except Exception:  # an unknown model name or one that cannot be built on the meta device
        return None
    layers: list[Callable[..., Any]] = [timm_backbone, timm.create_model, timm.models.build_model_with_cfg]
    layers.append(model_class.__init__)
    names: list[str] = []
    for function in layers:
        for parameter_name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD and function is model_class.__init__:
                return None  # the model class passes them on again: cannot tell
            keyword = parameter.kind in KEYWORD_PARAMETERS
            if keyword and parameter_name not in (*SET_BY_TIMM_BACKBONE, *names):
                names.append(parameter_name)
    return names


timm_backbone.accepted_keywords = timm_keywords  # type: ignore[attr-defined]  # read by src.config.signatures


def load_backbone_weights(model: nn.Module, path: str | Path) -> tuple[Triple, Triple] | None:
    """Load a local state dict into a backbone, skipping classifier keys; errors name the file.

    The file is read with the weights-only unpickler (:func:`~src.models.weights_file.load_torch_file`):
    tensors and plain data only, so nothing pickled in it can run.

    Returns:
        The input scaling (mean, std) saved with the weights when ``path`` is one of our ``.ckpt`` files
        (TileNet's ``input_mean`` / ``input_std`` buffers), else ``None``.

    Raises:
        FileNotFoundError: no such file.
        UnsafeFileError: the file holds pickled objects beyond tensors and plain data (not loaded).
        ValueError: no weights in the file match the backbone's parameters.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Backbone weights file not found: {path}")
    state = load_torch_file(path)
    saved = None
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint of ours
        weights = state["state_dict"]
        if "net.input_mean" in weights and "net.input_std" in weights:
            keys = (f"{path}: net.input_mean", f"{path}: net.input_std")
            mean, std = (weights[f"net.input_{x}"].flatten().tolist() for x in ("mean", "std"))
            saved = check_input_stats(mean, std, keys)
        state = {k.split("backbone.", 1)[1]: v for k, v in weights.items() if ".backbone." in f".{k}"}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"No weights in {path} match the backbone's parameters")
    model.load_state_dict(usable, strict=False)
    return saved


def _pretrained_stats(model: nn.Module, name: str) -> tuple[Triple, Triple] | None:
    """Timm's ``pretrained_cfg`` mean and std of the model (``None`` where it gives none)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    keys = (f"timm's {name} pretrained_cfg['mean']", f"timm's {name} pretrained_cfg['std']")
    return check_input_stats(cfg.get("mean"), cfg.get("std"), keys)


def freeze_stages(model: nn.Module, trainable_layers: int) -> None:
    """Freeze every parameter except those of the last ``trainable_layers`` feature stages."""
    stages = [info["module"] for info in getattr(model, "feature_info", [])]
    if not stages:
        raise ValueError(f"{type(model).__name__} exposes no feature stages; cannot set trainable_layers")
    if trainable_layers > len(stages):
        raise ValueError(f"trainable_layers={trainable_layers} but the backbone has {len(stages)} stages")
    keep = tuple(stage + "." for stage in stages[-trainable_layers:])
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(keep)
    frozen_norms = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not f"{name}.".startswith(keep)
    ]
    if frozen_norms:  # Lightning calls .train() every epoch: put frozen norms back in eval before each forward
        model.register_forward_pre_hook(functools.partial(_freeze_norms, frozen_norms))


def _freeze_norms(norms: Sequence[nn.Module], module: nn.Module, inputs: tuple) -> None:
    """Forward pre-hook: keep frozen BatchNorm layers in eval mode (running statistics not updated)."""
    for norm in norms:
        norm.eval()
