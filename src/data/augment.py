"""Training-time tile augmentations named by Slideflow's letter codes.

``x``/``y``: random horizontal/vertical flip (p=0.5); ``r``: random 90° rotation; ``j``: JPEG
recompression (p=0.5, quality 50-100); ``b``: Gaussian blur (p=0.1, sigma drawn from ``blur_sigmas``,
kernel sized from sigma so the blur really grows with it); ``d``: colour jitter; ``n``: stain
augmentation, done by the stain normalizer (see ``src.data.transforms``), so it needs ``normalizer`` set.
Augmentations apply to training tiles only; validation tiles are never augmented.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import torch
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as tvf

AUGMENT_CODES = "xyrjbdn"
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

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Apply the configured augmentations to a uint8 CxHxW tile."""
        codes = self.codes
        if "x" in codes and random.random() < 0.5:
            image = image.flip(-1)
        if "y" in codes and random.random() < 0.5:
            image = image.flip(-2)
        if "r" in codes:
            image = torch.rot90(image, random.randint(0, 3), dims=(-2, -1))
        if "j" in codes and random.random() < self.jpeg_p:
            quality = random.randint(*self.jpeg_quality)
            image = decode_jpeg(encode_jpeg(image.contiguous(), quality=quality))
        if "b" in codes and random.random() < self.blur_p:
            image = gaussian_blur(image, random.choice(self.blur_sigmas))
        if "d" in codes:
            j = self.jitter
            image = tvf.adjust_brightness(image, 1 + random.uniform(-j, j))
            image = tvf.adjust_contrast(image, 1 + random.uniform(-j, j))
            image = tvf.adjust_saturation(image, 1 + random.uniform(-j, j))
            image = tvf.adjust_hue(image, random.uniform(-j, j) / 2)
        return image

    def __repr__(self) -> str:
        return f"Augment(codes={self.codes!r})"


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with a kernel of ``2·ceil(3σ)+1`` pixels, so larger sigmas blur more."""
    kernel = 2 * math.ceil(3 * sigma) + 1
    return tvf.gaussian_blur(image, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
