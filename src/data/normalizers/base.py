"""What every stain normalizer shares.

Fitting on a reference tile or on training tiles, its saved fit, and stain augmentation (Slideflow's ``n``
code: normalize towards a randomly perturbed target). Two ways to apply it: :meth:`StainNormalizer.normalize`
on a (B, C, H, W) batch on any device (what training, validation, prediction and heatmaps use, on the
training device), and ``normalizer(tile)`` on one CxHxW tile: the per-pixel reference the fit is computed
with (OpenCV on the CPU); the two agree within one grey level.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class
from torchvision.io import ImageReadMode, decode_image, read_file

from src.errors import UnsafeFileError
from src.trust import AllowList, name_problem


class StainNormalizer(ABC):
    """A stain normalizer mapping uint8 3xHxW RGB tiles to the colours of a fitted target.

    Args:
        source: ``dataset`` (fit on ``fit_tiles`` tiles sampled from the training slides) or the path of
            a reference tile image (png/jpg/tif read as RGB).
        fit_tiles: Number of training tiles sampled for ``source=dataset``.
        augment_sd: Scale of the random perturbation of the target used for stain augmentation (``n``).
    """

    method: str = "base"
    #: Tiles normalized together on a CPU: passes over a few tiles stay in cache (faster than the whole batch).
    cpu_chunk: int = 2

    def __init__(self, source: str = "dataset", fit_tiles: int = 256, augment_sd: float = 0.1) -> None:
        self.source = str(source)
        self.fit_tiles = int(fit_tiles)
        self.augment_sd = float(augment_sd)
        self.target: dict[str, torch.Tensor] | None = None

    # ---------------------------------------------------------------- fitting
    @abstractmethod
    def target_stats(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The fit of (n, 3) RGB pixels in [0, 1]."""

    @abstractmethod
    def apply(self, pixels: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalize (n, 3) RGB pixels in [0, 1] of one tile to ``target``; returns pixels in [0, 1]."""

    @abstractmethod
    def apply_batch(self, images: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalize (B, 3, N) uint8 pixels of B tiles, each to its target (values stacked on a first axis of B)."""

    @abstractmethod
    def perturb(
        self, target: dict[str, torch.Tensor], n: int, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """``n`` randomly perturbed copies of ``target`` (stain augmentation), stacked on a first axis."""

    def fit(self, images: Sequence[torch.Tensor], max_pixels: int = 2_000_000, seed: int = 0) -> StainNormalizer:
        """Fit the target on uint8 CxHxW images (their pixels pooled; at most ``max_pixels`` sampled)."""
        pixels = torch.cat([image[:3].reshape(3, -1).T for image in images]).float() / 255.0
        if len(pixels) > max_pixels:
            keep = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:max_pixels]
            pixels = pixels[keep]
        self.target = {k: v.float() for k, v in self.target_stats(pixels).items()}
        return self

    def fit_source(self, read_tile: Callable[[int], torch.Tensor], n_tiles: int, seed: int = 0) -> StainNormalizer:
        """Fit as ``source`` says: on a reference image, or on tiles sampled with ``read_tile(i)``, i < n_tiles."""
        if self.source == "dataset":
            if n_tiles == 0:
                raise ValueError("normalizer.source=dataset but the training set has no tiles")
            rng = np.random.default_rng(seed)
            chosen = rng.choice(n_tiles, size=min(self.fit_tiles, n_tiles), replace=False)
            return self.fit([read_tile(int(i)) for i in sorted(chosen)], seed=seed)
        return self.fit([read_image(self.source)], seed=seed)

    # ------------------------------------------------------------- transform
    def __call__(self, image: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """Normalize a uint8 CxHxW tile (alpha dropped); ``augment`` perturbs the target first (``n``)."""
        if self.target is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or fit_source() first")
        target = {k: v[0] for k, v in self.perturb(self.target, 1, None).items()} if augment else self.target
        _, height, width = image.shape
        pixels = image[:3].reshape(3, -1).T.float() / 255.0
        out = self.apply(pixels, target)
        return (out.clamp(0, 1) * 255).round().to(torch.uint8).T.reshape(3, height, width)

    def normalize(
        self, images: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Normalize a uint8 (B, C, H, W) batch on its own device (alpha dropped); returns uint8 (B, 3, H, W).

        Args:
            images: The tiles, on the CPU or an accelerator.
            augment: Stain augmentation (``n``): each tile gets its own perturbed target.
            generator: CPU generator of the perturbations (``None``: torch's global one, which
                ``src.training.resumable.EpochSeeds`` seeds per epoch); drawn on the CPU, so a batch draws the
                same targets on every device.
        """
        if self.target is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or fit_source() first")
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise TypeError(f"normalize() takes uint8 (B, C, H, W) tiles; got {images.dtype} {tuple(images.shape)}")
        batch, _, height, width = images.shape
        if batch == 0:
            return images[:, :3]
        if augment:
            target = self.perturb(self.target, batch, generator)
        else:
            target = {k: v.expand(batch, *v.shape) for k, v in self.target.items()}
        target = {k: v.to(images.device, non_blocking=True) for k, v in target.items()}
        pixels = images[:, :3].reshape(batch, 3, height * width)
        step = self.cpu_chunk if images.device.type == "cpu" else batch
        parts = [
            self.apply_batch(pixels[i : i + step], {k: v[i : i + step] for k, v in target.items()})
            for i in range(0, batch, step)
        ]
        return torch.cat(parts).reshape(batch, 3, height, width)

    # ---------------------------------------------------------------- saving
    def get_fit(self) -> dict[str, Any]:
        """The fit as plain lists (``params.json``'s ``norm_fit``, also stored in checkpoints)."""
        if self.target is None:
            raise RuntimeError("Normalizer is not fitted")
        cls = type(self)
        return {
            "method": self.method,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "params": self.params(),
            **{k: v.tolist() for k, v in self.target.items()},
        }

    def params(self) -> dict[str, Any]:
        """Constructor arguments, saved with the fit so :func:`from_fit` rebuilds the same normalizer."""
        return {"source": self.source, "fit_tiles": self.fit_tiles, "augment_sd": self.augment_sd}

    def set_fit(self, fit: dict[str, Any]) -> StainNormalizer:
        """Restore a fit saved by :meth:`get_fit`."""
        if fit.get("method") != self.method:
            raise ValueError(f"Fit is for method {fit.get('method')!r}, not {self.method!r}")
        meta = ("method", "class", "params")
        self.target = {k: torch.tensor(v, dtype=torch.float32) for k, v in fit.items() if k not in meta}
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, fitted={self.target is not None})"


def from_fit(fit: dict[str, Any], allowed_classes: Sequence[str] = ()) -> StainNormalizer:
    """Rebuild a fitted normalizer from a saved ``norm_fit`` (``params.json`` or a checkpoint).

    The class named in the fit is imported only when ``conf/normalizer/*.yaml`` names it (by the name the
    config uses or the one a fit records) or it is listed in ``allowed_classes``: a fit read from a file never
    makes us import (and so run) another module (rule (c) of :mod:`src.trust`).

    Raises:
        UnsafeFileError: the class is not allowed (naming it and how to allow it); nothing was imported.
        TypeError: the class is not a :class:`StainNormalizer`.
    """
    name = fit.get("class") if isinstance(fit, dict) else None
    allowed = shipped_classes() | set(allowed_classes)
    if not isinstance(name, str) or name_problem(name, allowed, "norm_fit.class", "normalizer class"):
        raise UnsafeFileError(
            f"norm_fit class {name!r} is not one of this workbench's normalizers ({', '.join(sorted(allowed))}, "
            f"from conf/normalizer/*.yaml); pass allowed_classes=[{name!r}] if you trust it (nothing was imported)"
        )
    cls = get_class(name)
    if not (isinstance(cls, type) and issubclass(cls, StainNormalizer)):
        raise TypeError(f"norm_fit class {name!r} is not a StainNormalizer")
    return cls(**fit.get("params", {})).set_fit(fit)


@functools.cache
def shipped_classes() -> frozenset[str]:
    """The normalizer classes ``conf/normalizer/*.yaml`` names: by the config's names and by those fits record."""
    names = set()
    for target in AllowList.from_conf("normalizer").names():
        cls = get_class(target)  # conf/ is ours: importing what it names is what training does
        names |= {target, f"{cls.__module__}.{cls.__qualname__}"}
    return frozenset(names)


def read_image(path: str | Path) -> torch.Tensor:
    """Read an image file as a uint8 3xHxW RGB tensor; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"normalizer.source={str(path)!r} is neither 'dataset' nor an existing reference image file"
        )
    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
