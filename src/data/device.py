"""Whether a fit trains on CUDA, from ``trainer.accelerator``, before Lightning's Trainer exists.

The data module decides three things by it: where ``augment.jpeg_on=auto`` runs JPEG recompression, whether
the loaders pin memory, and the memory layout of tile batches (``src.data.collate``).
"""

from __future__ import annotations

import torch


def trains_on_cuda(accelerator: object) -> bool:
    """``trainer.accelerator`` ``gpu``/``cuda``, or ``auto`` with CUDA available (what Lightning then picks).

    Conservative: CPU, ``None`` and any other accelerator (``mps``, ``tpu``, ...) count as not CUDA.
    """
    device = str(accelerator).lower()
    return device in ("gpu", "cuda") or (device == "auto" and torch.cuda.is_available())
