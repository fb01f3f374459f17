"""Losses for continuous (linear) outcomes."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class LinearLoss(nn.Module):
    """Wraps an elementwise regression loss (``mse``, ``l1``, ``huber``, ``smooth_l1``) for one head.

    Args:
        name: Which loss.
        delta: Huber delta / SmoothL1 beta.
    """

    kind = "linear"
    _functions: ClassVar[dict] = {
        "mse": lambda o, t, d: nn.functional.mse_loss(o, t),
        "l1": lambda o, t, d: nn.functional.l1_loss(o, t),
        "huber": lambda o, t, d: nn.functional.huber_loss(o, t, delta=d),
        "smooth_l1": lambda o, t, d: nn.functional.smooth_l1_loss(o, t, beta=d),
    }

    def __init__(self, name: str = "mse", delta: float = 1.0) -> None:
        super().__init__()
        if name not in self._functions:
            raise ValueError(f"Unknown linear loss '{name}'; choose one of {sorted(self._functions)}")
        self.name = name
        self.delta = delta

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``output`` and ``target`` are (batch, 1)."""
        return self._functions[self.name](output, target.to(output.dtype), self.delta)
