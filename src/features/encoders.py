"""Tile encoders for feature bags: a preset names the architecture, its input transform and a local weights file.

A preset (``conf/encoder/<name>.yaml``) instantiates an :class:`Encoder`. Its ``model`` node is any ``_target_``
returning an ``nn.Module`` that maps a float (batch, 3, H, W) tile batch, already transformed, to (batch,
``num_features``) features: :func:`timm_encoder` for timm architectures (UNI, UNI2-h, Virchow2, H-optimus-0,
ResNet-50), :func:`tiny_random_encoder` for the demo and the tests. Nothing is downloaded: the weights come from
``weights_path`` (read with the weights-only loader), and a missing file is an error saying where to put it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.command_keys import config_key
from src.errors import ConfigError
from src.infra.files import write_json_atomic
from src.models.weights_file import load_torch_file
from src.trust import AllowList, resolve_name

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_SHA256 = re.compile(r"[0-9a-f]{64}")
LAYER_KEYS = ("mlp_layer", "act_layer")  # timm_encoder kwargs that name a layer class by its dotted path


class InputTransform(nn.Module):
    """The encoder's own input transform on uint8 tiles: resize → centre crop → ``(x / 255 - mean) / std``.

    Args:
        resize: Side the tile is resized to (None: as stored).
        center_crop: Side of the centre crop after resizing (None: no crop).
        mean: Per-channel mean in [0, 1] units.
        std: Per-channel sd in [0, 1] units.
        interpolation: ``bilinear`` or ``bicubic`` (torch ``interpolate`` modes).
        antialias: Antialias when shrinking (torchvision's default for tensors).
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(
        self,
        resize: int | None = None,
        center_crop: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "bicubic",
        antialias: bool = True,
    ) -> None:
        super().__init__()
        self.resize, self.center_crop = resize, center_crop
        self.interpolation, self.antialias = interpolation, antialias
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (batch, 3, H, W) tiles → float (batch, 3, crop, crop) encoder inputs."""
        x = image.float() / 255
        if self.resize and x.shape[-1] != self.resize:
            x = F.interpolate(
                x,
                size=(self.resize, self.resize),
                mode=self.interpolation,
                antialias=self.antialias,
                align_corners=False,
            ).clamp(0, 1)
        if self.center_crop and x.shape[-1] > self.center_crop:
            top = (x.shape[-2] - self.center_crop) // 2
            left = (x.shape[-1] - self.center_crop) // 2
            x = x[..., top : top + self.center_crop, left : left + self.center_crop]
        return (x - self.mean) / self.std

    def describe(self) -> dict[str, Any]:
        """Plain description (stored in every bag file)."""
        return {
            "resize": self.resize,
            "center_crop": self.center_crop,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "interpolation": self.interpolation,
            "antialias": self.antialias,
        }


class ClassAndMeanPooling(nn.Module):
    """A timm ViT's class token concatenated with the mean of its patch tokens (Virchow's 2 × width features).

    Args:
        vit: A timm VisionTransformer (``forward_features`` returns all tokens; ``num_prefix_tokens`` counts
            the class and register tokens).
    """

    def __init__(self, vit: Any) -> None:  # a timm VisionTransformer (typed nn.Module by timm.create_model)
        super().__init__()
        self.vit = vit
        self.num_features = 2 * int(vit.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) → (batch, 2 × width): class token ⊕ mean patch token."""
        tokens = self.vit.forward_features(x)
        return torch.cat([tokens[:, 0], tokens[:, self.vit.num_prefix_tokens :].mean(1)], dim=1)


def timm_encoder(name: str, pooling: str = "token", kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A randomly initialised timm model without classifier (the preset's weights file is loaded after).

    Args:
        name: timm architecture, e.g. ``vit_large_patch16_224``.
        pooling: timm ``global_pool`` (``token`` = class token, ``avg``), or ``cls_mean`` for class token ⊕
            mean of the patch tokens (:class:`ClassAndMeanPooling`).
        kwargs: Extra ``timm.create_model`` keyword arguments (``init_values``, ``reg_tokens``, ...). A string
            ``mlp_layer`` / ``act_layer`` is a layer's dotted name, imported only when a ``conf/encoder/*.yaml``
            names it at that key (rule (c) of :mod:`src.trust`).

    Raises:
        ConfigError: a layer name that ``conf/encoder/*.yaml`` does not name (nothing was imported).
    """
    import timm

    extra = dict(kwargs or {})
    for key in LAYER_KEYS:  # YAML names a layer by its dotted path; timm calls it once per block
        if isinstance(extra.get(key), str):
            extra[key] = resolve_name(
                extra[key],
                AllowList.from_conf("encoder", keys=(key,)).names(),
                f"encoder.model.kwargs.{key}",
                "A layer is imported only when a conf/encoder/*.yaml names it there: add your preset there.",
                error=ConfigError,
            )
    if pooling == "cls_mean":
        return ClassAndMeanPooling(timm.create_model(name, pretrained=False, num_classes=0, **extra))
    return timm.create_model(name, pretrained=False, num_classes=0, global_pool=pooling, **extra)


class TinyRandomEncoder(nn.Module):
    """A small convolutional encoder with seeded random weights, for the demo and the tests (no weights file).

    Two strided convolutions, then the mean and the max of the feature maps: random filters still measure
    colour and texture, which is what the demo's tumour types differ in.

    Args:
        num_features: Output width (even; half mean-pooled, half max-pooled).
        seed: Seed of the weights (another seed = other weights = another bag folder).
    """

    def __init__(self, num_features: int = 64, seed: int = 0) -> None:
        super().__init__()
        if num_features % 2:
            raise ValueError(f"TinyRandomEncoder num_features must be even, got {num_features}")
        generator = torch.Generator().manual_seed(int(seed))
        width = num_features // 2
        self.conv1 = nn.Conv2d(3, 16, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(16, width, 3, stride=2, padding=1)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 3, H, W) → (batch, num_features)."""
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


def tiny_random_encoder(num_features: int = 64, seed: int = 0) -> nn.Module:
    """:class:`TinyRandomEncoder` (the ``encoder=tiny_random`` preset)."""
    return TinyRandomEncoder(num_features, seed)


class Encoder:
    """One encoder preset: what to build, how to feed it, where its weights are.

    Args:
        name: Preset name (part of the bag folder's name and of every bag's attributes).
        num_features: Width of the features it returns (checked on the first batch).
        model: ``_target_`` node building the ``nn.Module`` (random init; weights are loaded after).
        transform: Keyword arguments of :class:`InputTransform`.
        weights_path: Local weights file (a state dict); ``None`` for an encoder without weights file.
        weights_hint: Where to get the file (said when it is missing).
        precision: Autocast dtype on a GPU (``fp16``, ``bf16``, ``fp32``); the CPU runs fp32.
    """

    def __init__(
        self,
        name: str,
        num_features: int,
        model: Mapping[str, Any],
        transform: Mapping[str, Any] | None = None,
        weights_path: str | None = None,
        weights_hint: str = "",
        precision: str = "fp16",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"encoder.precision={precision!r}; choose one of {sorted(PRECISIONS)}")
        self.name = str(name)
        self.num_features = int(num_features)
        self.model_cfg: dict[str, Any] = (
            cast(dict[str, Any], OmegaConf.to_container(model, resolve=True))
            if isinstance(model, DictConfig)
            else dict(model)
        )
        self.transform_kwargs = dict(transform or {})
        self.weights_path = Path(weights_path) if weights_path else None
        self.weights_hint = weights_hint
        self.precision = precision

    def check(self) -> None:
        """Raise if the weights file is missing (before any tile is read).

        Raises:
            FileNotFoundError: naming the preset, the expected path and where to get the file.
        """
        if self.weights_path is not None and not self.weights_path.is_file():
            hint = f" ({self.weights_hint})" if self.weights_hint else ""
            raise FileNotFoundError(
                f"encoder={self.name}: weights file {self.weights_path} not found. Put the encoder's weights "
                f"there{hint}, or point {config_key('encoder_weights')} at your copy; nothing is downloaded at run time"
            )

    def transform(self) -> InputTransform:
        """The encoder's input transform."""
        return InputTransform(**self.transform_kwargs)

    def build(self) -> nn.Module:
        """The model in eval mode, with the weights file loaded (strictly: every tensor must fit).

        Raises:
            FileNotFoundError: the weights file is missing.
            RuntimeError: the file's tensors do not fit the architecture (naming the file).
        """
        self.check()
        module = instantiate(self.model_cfg)
        if self.weights_path is not None:
            state = load_torch_file(self.weights_path)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            target = module.vit if isinstance(module, ClassAndMeanPooling) else module
            missing, unexpected = target.load_state_dict(state, strict=False)
            unexpected = [k for k in unexpected if not k.startswith(("head.", "fc.", "classifier."))]
            if missing or unexpected:
                raise RuntimeError(
                    f"encoder={self.name}: {self.weights_path} does not fit {self.model_cfg.get('name')}: "
                    f"missing {missing[:5]}, unexpected {unexpected[:5]}"
                )
        return module.eval()

    def weights_sha256(self, cache_file: Path | None = None) -> str:
        """SHA-256 of the weights file (cached by path, size and mtime), or of the built model's tensors."""
        if self.weights_path is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(instantiate(self.model_cfg).state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            return digest.hexdigest()
        stat = self.weights_path.stat()
        key = f"{self.weights_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        cache = _read_json(cache_file) if cache_file else {}
        cached = cache.get(key)
        if isinstance(cached, str) and _SHA256.fullmatch(cached):
            return cached
        digest = hashlib.sha256()
        with self.weights_path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        cache[key] = digest.hexdigest()
        if cache_file is not None:  # only a cache: a failed write (a full disk) costs a hash next time
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(cache_file, cache, indent=1)
            except OSError as err:
                log.warning("Could not update %s (%s); the weights are hashed again next time", cache_file, err)
        return cache[key]

    def describe(self) -> dict[str, Any]:
        """Everything that decides the features, except the weights (plain data; part of the bag key)."""
        return {
            "name": self.name,
            "num_features": self.num_features,
            "model": self.model_cfg,
            "transform": self.transform().describe(),
            "precision": self.precision,
        }


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
