"""The tile transform chain, in Slideflow's order: stain normalizer (+ ``n``) → augmentations → input scaling.

It runs in two places, each operation in one of them only:

- **workers** (:func:`tile_transform`, the datasets' ``transform`` hook): per uint8 tile, JPEG recompression
  (``j``) with ``augment.jpeg_on=workers`` (``auto`` on a CPU), or a custom augmentation callable. Nothing
  else: without these the hook is ``None``. Workers return uint8 tiles (4x fewer bytes through the
  inter-process queues than float32).
- **training device** (:class:`BatchTransform`, called by ``TileModule.on_after_batch_transfer``): on the uint8
  batch, the stain normalizer (+ ``n``), JPEG recompression with ``augment.jpeg_on=device`` (``auto`` on CUDA),
  flips, rotations, blur, colour jitter (training only), then the model's input scaling
  (``(x / 255 - mean) / std`` with the backbone's mean and std) and, optionally, the ``channels_last`` memory
  layout. Validation batches are normalized and scaled, never augmented.

Flips and rotations commute with the normalizers (their statistics are per tile, not per position), so
``x y r`` after the normalizer equals Slideflow's order exactly; ``j`` on the device does too (normalizer, then
``j``), ``j`` in the workers comes before the normalizer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from src.data.augment import Augment
from src.data.normalizers import StainNormalizer


class WorkerTransform:
    """The per-tile part of the chain, run in the data-loading workers: uint8 CxHxW tile → uint8 tile.

    Args:
        augment: An :class:`Augment` (its worker codes run here: ``j`` unless ``jpeg_on=device``) or any
            callable on uint8 tiles (run here whole, before the device-side normalizer).
    """

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.augment = augment

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """The worker-side augmentations of one tile."""
        if isinstance(self.augment, Augment):
            return self.augment.worker(image)
        return self.augment(image)

    def __repr__(self) -> str:
        return f"WorkerTransform({self.augment!r})"


def tile_transform(
    augment: Callable[[torch.Tensor], torch.Tensor] | None, normalizer: StainNormalizer | None, train: bool
) -> WorkerTransform | None:
    """The worker-side transform of training (``train=True``) or validation tiles; ``None`` when there is none.

    The normalizer itself runs on the device (:class:`BatchTransform`); it is passed here to check that stain
    augmentation (``n``) has one.

    Raises:
        TypeError: ``augment`` is not callable.
        ValueError: ``n`` without a stain normalizer.
    """
    augment = augment if train else None
    if augment is not None and not callable(augment):
        raise TypeError("augment must instantiate a callable on uint8 CxHxW tiles")
    if getattr(augment, "stain", False) and normalizer is None:
        raise ValueError("Stain augmentation ('n') needs a stain normalizer (normalizer=reinhard|macenko)")
    if augment is None or (isinstance(augment, Augment) and not augment.worker_codes):
        return None
    return WorkerTransform(augment)


class BatchTransform:
    """The device-side part of the chain: uint8 (B, C, H, W) batch → model input, on the batch's device.

    Args:
        normalizer: A fitted stain normalizer, or ``None``.
        augment: The training augmentations (``None`` for validation: never augmented). Its batch codes run
            here (``j`` among them with ``jpeg_on=device``); ``n`` makes the normalizer draw a perturbed target
            per tile. A custom callable (not an :class:`Augment`) runs in the workers instead.
        scale: The model's input scaling of uint8 batches (``TileNet.scale``), or ``None`` to return uint8.
        channels_last: Return the batch in channels-last memory layout.
    """

    def __init__(
        self,
        normalizer: StainNormalizer | None = None,
        augment: Callable | None = None,
        scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
        channels_last: bool = False,
    ) -> None:
        self.normalizer = normalizer
        self.augment = augment if isinstance(augment, Augment) else None
        self.stain = bool(self.augment is not None and self.augment.stain)
        if self.stain and normalizer is None:
            raise ValueError("Stain augmentation ('n') needs a stain normalizer (normalizer=reinhard|macenko)")
        self.scale = scale
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalize (+ ``n``), augment, scale and lay out a uint8 batch.

        Args:
            images: uint8 (B, C, H, W) tiles on the training device, in any memory layout (made contiguous
                first, before the normalizer).
            generator: CPU generator of the per-tile draws (``None``: torch's global one, which
                ``src.training.resumable.EpochSeeds`` seeds at every epoch start, so a seed and an epoch give
                the same tiles, resumed or not, whatever the device and ``num_workers``).
        """
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"BatchTransform takes uint8 (B, C, H, W) tiles; got {images.dtype} {tuple(images.shape)}")
        images = images.contiguous()  # batches for CUDA come channels-last-strided, as decoded (src.data.collate)
        if self.normalizer is not None:
            images = self.normalizer.normalize(images, augment=self.stain, generator=generator)
        if self.augment is not None and self.augment.batch_codes:
            images = self.augment.batch(images, generator)
        if self.scale is not None:
            images = self.scale(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def __repr__(self) -> str:
        return (
            f"BatchTransform(normalizer={self.normalizer!r}, augment={self.augment!r}, n={self.stain}, "
            f"scale={self.scale is not None}, channels_last={self.channels_last})"
        )
