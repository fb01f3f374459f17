"""An outcome kind written outside ``src/`` (as a user would): a linear outcome whose predictions are
clipped to the training range. Used by tests/outcomes/test_kinds.py through ``loss.kind=<this module>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from src.outcomes.linear import LinearOutcome


@dataclass
class BoundedOutcome(LinearOutcome):
    """Predictions clipped to [low, high], the training slides' range (fitted with the head)."""

    kind: ClassVar[str] = "bounded_kind"
    low: float = -np.inf
    high: float = np.inf

    def fit_head(self, loss_fn, part: np.ndarray) -> tuple[float, float]:
        """Remember the training range, then fit as a linear outcome."""
        self.low, self.high = float(part[:, 0].min()), float(part[:, 0].max())
        return super().fit_head(loss_fn, part)

    def predict(self, output: torch.Tensor) -> np.ndarray:
        """Clipped values."""
        return np.clip(output.float().numpy(), self.low, self.high)
