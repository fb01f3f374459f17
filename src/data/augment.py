"""Training-time tile augmentations named by Slideflow's letter codes.

``x``/``y``: random horizontal/vertical flip (p=0.5); ``r``: random 90° rotation; ``j``: JPEG
recompression (p=0.5, quality 50-100); ``b``: Gaussian blur (p=0.1, sigma drawn from ``blur_sigmas``,
kernel sized from sigma so the blur really grows with it); ``d``: colour jitter; ``n``: stain
augmentation, done by the stain normalizer (see ``src.data.transforms``), so it needs ``normalizer`` set.
Augmentations apply to training tiles only; validation tiles are never augmented.

Where each runs (one definition each): ``x y r b d`` on the batch on the training device
(:meth:`Augment.batch`, after the stain normalizer, as in Slideflow's order), from per-tile draws made on the
CPU (:meth:`Augment.draw`) so a seed gives the same tiles on any device. ``j`` runs where ``jpeg_on`` says:

- ``workers``: per tile in the data-loading workers (:meth:`Augment.worker`, Python's ``random`` seeded per
  worker), before the stain normalizer; libjpeg runs there in parallel with the training step.
- ``device``: on the batch on the training device, first of the batch codes (after the stain normalizer, as in
  Slideflow's order), from per-tile draws (:meth:`Augment.draw`: recompressed or not, and the quality); on CUDA
  with nvJPEG (torchvision's GPU ``encode_jpeg``/``decode_jpeg``, one encode call per quality), on a CPU batch
  with libjpeg tile by tile (the same result as the worker path for the same quality).
- ``auto`` (default): ``device`` when training on CUDA, else ``workers`` (CPU training: the workers are
  parallel processes, the training process is one). The data module resolves it from ``trainer.accelerator``
  (:meth:`Augment.placed`, :func:`jpeg_on_device`); an unresolved ``auto`` runs ``j`` in the workers.

``j`` runs in one place only: with ``jpeg_on=device`` the workers do not recompress.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping, Sequence

import torch
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as tvf

from src.data.device import trains_on_cuda

AUGMENT_CODES = "xyrjbdn"
WORKER_CODES = "j"  # per tile, in the data-loading workers
BATCH_CODES = "xyrbd"  # on the batch, on the training device (n: by the stain normalizer there)
SLIDEFLOW_TRUE = "xyrjb"  # Slideflow's augment=True
JPEG_ON = ("auto", "workers", "device")  # where j runs (augment.jpeg_on)


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
    """Validate ``augment.codes`` (and ``augment.jpeg_on``) against the ``normalizer`` group before any data is read.

    Returns:
        The code string.

    Raises:
        ValueError: an unknown letter, ``n`` (stain augmentation) without a stain normalizer, or an unknown
            ``augment.jpeg_on``.
    """
    codes = parse_codes(augment.get("codes") if augment else None)
    check_jpeg_on(augment.get("jpeg_on", "auto") if augment else "auto")
    if "n" in codes and not (normalizer and normalizer.get("_target_")):
        raise ValueError(
            "augment.codes has 'n' (stain augmentation), which needs a stain normalizer: "
            "add normalizer=reinhard or normalizer=macenko"
        )
    return codes


def check_jpeg_on(value: object) -> str:
    """``augment.jpeg_on`` as one of :data:`JPEG_ON`.

    Raises:
        ValueError: another value, naming the key and the allowed ones.
    """
    text = str(value).lower()
    if text not in JPEG_ON:
        raise ValueError(f"augment.jpeg_on={value!r}: choose one of {', '.join(JPEG_ON)}")
    return text


def jpeg_on_device(jpeg_on: str, accelerator: object) -> bool:
    """Whether ``j`` runs on the training device: ``device``, or ``auto`` when training on CUDA.

    ``auto`` is conservative (:func:`~src.data.device.trains_on_cuda`): only ``trainer.accelerator``
    ``gpu``/``cuda``, or ``auto`` with CUDA available, count as CUDA; CPU (and any other accelerator) keeps
    ``j`` in the workers.

    Args:
        jpeg_on: ``auto``, ``workers`` or ``device``.
        accelerator: ``trainer.accelerator`` (``cpu``, ``gpu``, ``cuda``, ``auto``, ...; None: CPU).
    """
    jpeg_on = check_jpeg_on(jpeg_on)
    return jpeg_on == "device" if jpeg_on != "auto" else trains_on_cuda(accelerator)


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
        jpeg_on: Where ``j`` runs: ``workers``, ``device`` or ``auto`` (see the module doc; the data module
            resolves ``auto`` with :meth:`placed`).

    Raises:
        ValueError: an unknown code or ``jpeg_on``.
    """

    def __init__(
        self,
        codes: str | Sequence[str] | bool = "xyrj",
        jpeg_quality: tuple[int, int] = (50, 100),
        jpeg_p: float = 0.5,
        blur_p: float = 0.1,
        blur_sigmas: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
        jitter: float = 0.1,
        jpeg_on: str = "auto",
    ) -> None:
        self.codes = parse_codes(codes)
        self.jpeg_on = check_jpeg_on(jpeg_on)
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
    def jpeg_device(self) -> bool:
        """Whether ``j`` is requested and runs on the batch on the training device (``jpeg_on=device``)."""
        return "j" in self.codes and self.jpeg_on == "device"

    @property
    def worker_codes(self) -> str:
        """The codes run per tile in the data-loading workers (``j``, unless it runs on the device)."""
        return "" if self.jpeg_device else "".join(c for c in self.codes if c in WORKER_CODES)

    @property
    def batch_codes(self) -> str:
        """The codes run on the batch on the training device (``x y r b d``, and ``j`` with ``jpeg_on=device``)."""
        return "".join(c for c in self.codes if c in BATCH_CODES or (c == "j" and self.jpeg_device))

    def placed(self, accelerator: object) -> Augment:
        """A copy with ``jpeg_on`` resolved (``workers`` or ``device``) for training on ``trainer.accelerator``."""
        placed = copy.copy(self)
        placed.jpeg_on = "device" if jpeg_on_device(self.jpeg_on, accelerator) else "workers"
        return placed

    def worker(self, image: torch.Tensor) -> torch.Tensor:
        """The worker-side codes (``j``) on one uint8 CxHxW tile (Python's ``random``, seeded per worker)."""
        if self.worker_codes and random.random() < self.jpeg_p:
            image = recompress(image, random.randint(*self.jpeg_quality))
        return image

    def draw(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-tile random draws of the batch codes for ``n`` tiles, on the CPU, in a fixed order.

        Returns:
            ``flip_x``/``flip_y`` (bool), ``rotation`` (quarter turns 0-3), ``blur`` (bool), ``sigma``
            (index into ``blur_sigmas``), ``jitter`` ((n, 4) brightness, contrast, saturation, hue factors),
            and with ``j`` on the device ``jpeg`` (bool: recompressed) and ``quality`` (its JPEG quality),
            drawn last so the other draws stay those of ``j`` in the workers.
        """
        codes = self.codes
        never = torch.zeros(n, dtype=torch.bool)
        draws = {
            "flip_x": torch.rand(n, generator=generator) < 0.5 if "x" in codes else never,
            "flip_y": torch.rand(n, generator=generator) < 0.5 if "y" in codes else never,
            "rotation": torch.randint(0, 4, (n,), generator=generator) if "r" in codes else never.long(),
            "blur": torch.rand(n, generator=generator) < self.blur_p if "b" in codes else never,
            "sigma": torch.randint(0, len(self.blur_sigmas), (n,), generator=generator),
            "jitter": (torch.rand(n, 4, generator=generator) * 2 - 1) * self.jitter * torch.tensor([1, 1, 1, 0.5]),
        }
        if self.jpeg_device:
            low, high = self.jpeg_quality
            draws["jpeg"] = torch.rand(n, generator=generator) < self.jpeg_p
            draws["quality"] = torch.randint(int(low), int(high) + 1, (n,), generator=generator)
        return draws

    def batch(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The batch codes (``x y r b d``; ``j`` with ``jpeg_on=device``) on a uint8 (B, C, H, W) batch, on its device.

        Returns:
            A new batch.
        """
        return self.apply_draws(images, self.draw(len(images), generator))

    def apply_draws(self, images: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply the batch codes as ``draws`` (from :meth:`draw`) say, each tile its own (``j`` first)."""
        codes, out = self.codes, images.clone()
        if self.jpeg_device:
            recompress_batch(out, draws["jpeg"], draws["quality"])
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
        return f"Augment(codes={self.codes!r}, jpeg_on={self.jpeg_on!r})"


def _on(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Indices of the true entries of a CPU mask, on ``device``."""
    return mask.nonzero().flatten().to(device)


def recompress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """One uint8 CxHxW tile encoded as JPEG at ``quality`` and decoded again (libjpeg-turbo, on the CPU)."""
    return decode_jpeg(encode_jpeg(image.contiguous(), quality=int(quality)))


def recompress_batch(images: torch.Tensor, chosen: torch.Tensor, quality: torch.Tensor) -> None:
    """JPEG-recompress, in place, the tiles of a uint8 (B, C, H, W) batch where ``chosen``, tile i at ``quality[i]``.

    On CUDA with nvJPEG: one encode call per quality (the encoder takes one quality per call), one decode call
    for all; the bitstreams cross to the CPU once (the decoder reads them there). On any other batch: libjpeg
    tile by tile on the CPU (:func:`recompress`, what the workers do).

    Args:
        images: The batch, changed in place.
        chosen: (B,) bool CPU mask of the tiles to recompress.
        quality: (B,) int CPU JPEG quality of each tile.
    """
    picked = chosen.nonzero().flatten().tolist()
    if not picked:
        return
    qualities = quality.tolist()
    if images.device.type != "cuda":  # libjpeg on the CPU (a tile on another device goes there and back)
        for i in picked:
            images[i] = recompress(images[i].cpu(), qualities[i]).to(images.device)
        return
    order, encoded = [], []
    for level in sorted({qualities[i] for i in picked}):
        tiles = [i for i in picked if qualities[i] == level]
        encoded += encode_jpeg([images[i].contiguous() for i in tiles], quality=level)
        order += tiles
    streams = torch.cat(encoded).cpu().split([len(stream) for stream in encoded])
    decoded = decode_jpeg(list(streams), device=images.device)
    images[torch.tensor(order, device=images.device)] = torch.stack(decoded)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a uint8 tile or batch with a kernel of ``2·ceil(3σ)+1`` pixels, so larger sigmas blur more."""
    kernel = 2 * math.ceil(3 * sigma) + 1
    return tvf.gaussian_blur(image, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
