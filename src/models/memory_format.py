"""The ``channels_last`` config key: the memory layout a tile model trains in.

Channels-last (NHWC) lets cuDNN use tensor-core convolution kernels without layout conversions, which is
what ``16-mixed`` on a recent GPU needs to reach its speed; on CPUs training stays in the default layout
unless asked (``channels_last=true``). Prediction uses channels-last always (``src.inference.models``).
"""

from __future__ import annotations

import torch

CHOICES = ("auto", "true", "false")


def channels_last_setting(value: object, accelerator: object) -> bool:
    """Whether to train channels-last: the ``channels_last`` config key (``auto``: on GPUs, off on CPUs).

    Args:
        value: ``auto``, ``true`` or ``false``.
        accelerator: ``trainer.accelerator`` (``cpu``, ``gpu``, ``cuda``, ``auto``, ...).

    Raises:
        ValueError: another value, naming the key and the allowed ones.
    """
    text = str(value).lower()
    if text not in CHOICES:
        raise ValueError(f"channels_last={value!r}: choose one of auto, true, false")
    if text != "auto":
        return text == "true"
    device = str(accelerator).lower()
    return device in ("gpu", "cuda") or (device == "auto" and torch.cuda.is_available())
