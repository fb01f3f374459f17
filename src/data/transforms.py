"""The tile transform chain, in Slideflow's order: stain normalizer (+ ``n``) → augmentations.

Both take and return uint8 CxHxW tiles; the model scales them (``TileNet``, with its backbone's mean and
std). Validation tiles are normalized but never augmented.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from src.data.augment import Augment
from src.data.normalizers import StainNormalizer


class TileTransform:
    """Applies a fitted stain normalizer, then augmentations, to a uint8 CxHxW tile; returns a uint8 tile.

    Args:
        normalizer: A fitted stain normalizer, or ``None``.
        augment: The augmentation callable (training only), or ``None``.
        stain_augment: Normalize towards a randomly perturbed target (Slideflow's ``n``; training only).
    """

    def __init__(
        self,
        normalizer: StainNormalizer | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        stain_augment: bool = False,
    ) -> None:
        if stain_augment and normalizer is None:
            raise ValueError("Stain augmentation ('n') needs a stain normalizer (normalizer=reinhard|macenko)")
        self.normalizer = normalizer
        self.augment = augment
        self.stain_augment = stain_augment

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Normalize (and stain-augment), then augment a uint8 CxHxW tile."""
        if self.normalizer is not None:
            image = self.normalizer(image, augment=self.stain_augment)
        if self.augment is not None:
            image = self.augment(image)
        return image

    def __repr__(self) -> str:
        return f"TileTransform(normalizer={self.normalizer!r}, augment={self.augment!r}, n={self.stain_augment})"


def tile_transform(
    augment: Callable[[torch.Tensor], torch.Tensor] | None, normalizer: StainNormalizer | None, train: bool
) -> TileTransform | None:
    """The transform of training (``train=True``) or validation tiles; ``None`` when there is nothing to do."""
    augment = augment if train else None
    if augment is not None and not callable(augment):
        raise TypeError("augment must instantiate a callable on uint8 CxHxW tiles")
    stain = bool(train and getattr(augment, "stain", False))
    if isinstance(augment, Augment) and not augment.codes.replace("n", ""):
        augment = None  # nothing left for the augmenter to do
    if normalizer is None and augment is None:
        if stain:
            raise ValueError("Stain augmentation ('n') needs a stain normalizer (normalizer=reinhard|macenko)")
        return None
    return TileTransform(normalizer, augment, stain)
