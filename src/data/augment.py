"""Training-time tile augmentations named by Slideflow's letter codes.

``x``/``y``: random horizontal/vertical flip (p=0.5); ``r``: random 90° rotation; ``j``: JPEG
recompression (p=0.5, quality 50-100); ``b``: Gaussian blur (p=0.1, sigma drawn from ``blur_sigmas``,
kernel sized from sigma so the blur really grows with it); ``d``: colour jitter; ``n``: stain
augmentation, done by the stain normalizer (see ``src.data.transforms``), so it needs ``normalizer`` set.
Augmentations apply to training tiles only; validation tiles are never augmented.

Where each runs (one definition each): ``j`` per tile in the data-loading workers (:meth:`Augment.worker`:
libjpeg is a CPU codec, the tile is already there as decoded, and the workers run it in parallel with the
training step); ``x y r b d`` on the batch on the training device (:meth:`Augment.batch`, after the stain
normalizer, as in Slideflow's order), from per-tile draws made on the CPU (:meth:`Augment.draw`) so a seed
gives the same tiles on any device.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import torch
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as tvf

AUGMENT_CODES = "xyrjbdn"
WORKER_CODES = "j"  # per tile, in the data-loading workers
BATCH_CODES = "xyrbd"  # on the batch, on the training device (n: by the stain normalizer there)
SLIDEFLOW_TRUE = "xyrjb"  # Slideflow's augment=True


def parse_codes(codes: str | Sequence[str] | bool | None) -> str:
    """Normalise ``"xyrj"``, ``["x", "y"]``, ``True`` (= ``xyrjb``) or ``None`` to a code string.

    Raises:
        ValueError: an unknown letter, naming it and listing the valid codes.
    """
    if codes is None or codes is False:
        return ""
    if codes is True:
        return SLIDEFLOW_TRUE
    text = codes if isinstance(codes, str) else "".join(str(c) for c in codes)
    unknown = sorted({c for c in text if c not in AUGMENT_CODES})
    if unknown:
        raise ValueError(
            f"Unknown augmentation code(s) {unknown} in augment.codes; valid codes are {list(AUGMENT_CODES)}"
        )
    return text


def check_augment_config(augment: Mapping | None, normalizer: Mapping | None) -> str:
    """Validate ``augment.codes`` against the ``normalizer`` group before any data is read.

    Returns:
        The code string.

    Raises:
        ValueError: an unknown letter, or ``n`` (stain augmentation) without a stain normalizer.
    """
    codes = parse_codes(augment.get("codes") if augment else None)
    if "n" in codes and not (normalizer and normalizer.get("_target_")):
        raise ValueError(
            "augment.codes has 'n' (stain augmentation), which needs a stain normalizer: "
            "add normalizer=reinhard or normalizer=macenko"
        )
    return codes


class Augment:
    """Applies the augmentations in ``codes`` to a uint8 CxHxW tile.

    Args:
        codes: Letter codes, e.g. ``"xyrj"`` or ``["x", "y"]``; ``n`` is carried out by the normalizer
            (see :attr:`stain`), the other letters here.
        jpeg_quality: (min, max) JPEG quality for ``j``.
        jpeg_p: Probability of JPEG recompression.
        blur_p: Probability of blurring for ``b``.
        blur_sigmas: Sigmas drawn uniformly when blurring.
        jitter: Brightness/contrast/saturation/hue strength for ``d``.
    """

    def __init__(
        self,
        codes: str | Sequence[str] | bool = "xyrj",
        jpeg_quality: tuple[int, int] = (50, 100),
        jpeg_p: float = 0.5,
        blur_p: float = 0.1,
        blur_sigmas: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
        jitter: float = 0.1,
    ) -> None:
        self.codes = parse_codes(codes)
        self.jpeg_quality = tuple(jpeg_quality)
        self.jpeg_p = jpeg_p
        self.blur_p = blur_p
        self.blur_sigmas = list(blur_sigmas)
        self.jitter = jitter

    @property
    def stain(self) -> bool:
        """Whether stain augmentation (``n``) is requested; the stain normalizer performs it."""
        return "n" in self.codes

    @property
    def worker_codes(self) -> str:
        """The codes run per tile in the data-loading workers (``j``)."""
        return "".join(c for c in self.codes if c in WORKER_CODES)

    @property
    def batch_codes(self) -> str:
        """The codes run on the batch on the training device (``x y r b d``)."""
        return "".join(c for c in self.codes if c in BATCH_CODES)

    def worker(self, image: torch.Tensor) -> torch.Tensor:
        """The worker-side codes (``j``) on one uint8 CxHxW tile (Python's ``random``, seeded per worker)."""
        if "j" in self.codes and random.random() < self.jpeg_p:
            quality = random.randint(*self.jpeg_quality)
            image = decode_jpeg(encode_jpeg(image.contiguous(), quality=quality))
        return image

    def draw(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-tile random draws of the batch codes for ``n`` tiles, on the CPU, in a fixed order.

        Returns:
            ``flip_x``/``flip_y`` (bool), ``rotation`` (quarter turns 0-3), ``blur`` (bool), ``sigma``
            (index into ``blur_sigmas``), ``jitter`` ((n, 4) brightness, contrast, saturation, hue factors).
        """
        codes = self.codes
        never = torch.zeros(n, dtype=torch.bool)
        return {
            "flip_x": torch.rand(n, generator=generator) < 0.5 if "x" in codes else never,
            "flip_y": torch.rand(n, generator=generator) < 0.5 if "y" in codes else never,
            "rotation": torch.randint(0, 4, (n,), generator=generator) if "r" in codes else never.long(),
            "blur": torch.rand(n, generator=generator) < self.blur_p if "b" in codes else never,
            "sigma": torch.randint(0, len(self.blur_sigmas), (n,), generator=generator),
            "jitter": (torch.rand(n, 4, generator=generator) * 2 - 1) * self.jitter * torch.tensor([1, 1, 1, 0.5]),
        }

    def batch(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The batch codes (``x y r b d``) on a uint8 (B, C, H, W) batch, on its device; returns a new batch."""
        return self.apply_draws(images, self.draw(len(images), generator))

    def apply_draws(self, images: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply the batch codes as ``draws`` (from :meth:`draw`) say, each tile its own."""
        codes, out = self.codes, images.clone()
        for code, key, dim in (("x", "flip_x", -1), ("y", "flip_y", -2)):
            chosen = _on(draws[key], images.device) if code in codes else None
            if chosen is not None and len(chosen):
                out[chosen] = out[chosen].flip(dim)
        if "r" in codes:
            if images.shape[-1] != images.shape[-2] and bool((draws["rotation"] % 2).any()):
                raise ValueError(f"augment 'r' rotates by quarter turns, which needs square tiles; got {images.shape}")
            for turns in (1, 2, 3):
                chosen = _on(draws["rotation"] == turns, images.device)
                if len(chosen):
                    out[chosen] = torch.rot90(out[chosen], turns, dims=(-2, -1))
        if "b" in codes:
            for i, sigma in enumerate(self.blur_sigmas):
                chosen = _on(draws["blur"] & (draws["sigma"] == i), images.device)
                if len(chosen):
                    out[chosen] = gaussian_blur(out[chosen], sigma)
        if "d" in codes:
            for i, (brightness, contrast, saturation, hue) in enumerate(draws["jitter"].tolist()):
                tile = tvf.adjust_brightness(out[i], 1 + brightness)
                tile = tvf.adjust_contrast(tile, 1 + contrast)
                tile = tvf.adjust_saturation(tile, 1 + saturation)
                out[i] = tvf.adjust_hue(tile, hue)
        return out

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """All the configured augmentations on one uint8 CxHxW tile (the worker codes, then the batch codes)."""
        return self.batch(self.worker(image)[None])[0]

    def __repr__(self) -> str:
        return f"Augment(codes={self.codes!r})"


def _on(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Indices of the true entries of a CPU mask, on ``device``."""
    return mask.nonzero().flatten().to(device)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a uint8 tile or batch with a kernel of ``2·ceil(3σ)+1`` pixels, so larger sigmas blur more."""
    kernel = 2 * math.ceil(3 * sigma) + 1
    return tvf.gaussian_blur(image, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
