"""Losses for continuous (linear) outcomes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn


class LinearLoss(nn.Module):
    """Wraps an elementwise regression loss (``mse``, ``l1``, ``huber``, ``smooth_l1``) for one head.

    The loss is computed on a standardised scale: output and target are divided by ``scale``, the sd of
    the outcome over the training slides (set by :meth:`fit`; 1 until then). So MSE is in sd², the Huber
    delta is in sd, and outcomes with different units weigh alike when several are summed.

    Args:
        name: Which loss.
        delta: Huber delta / SmoothL1 beta, in training-sd units.
    """

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
        self.register_buffer("scale", torch.ones(()))

    def fit(self, values: np.ndarray) -> None:
        """Set the scale to the sd of the training slides' values (1 when they are constant)."""
        sd = float(np.std(np.asarray(values, dtype=np.float64)))
        self.scale = torch.tensor(sd if sd > 0 else 1.0, dtype=torch.float32)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``output`` and ``target`` are (batch, 1)."""
        scale = self.scale.to(output.dtype)
        return self._functions[self.name](output / scale, target.to(output.dtype) / scale, self.delta)
