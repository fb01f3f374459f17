"""Where each outcome's targets sit in a slide's concatenated target vector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from src.outcomes.base import Outcome

T = TypeVar("T", np.ndarray, torch.Tensor)


class TargetLayout:
    """The target slices of a list of outcomes (the one place that adds up ``n_targets``).

    Args:
        outcomes: The outcomes, in head order.
    """

    def __init__(self, outcomes: Sequence[Outcome]) -> None:
        self.outcomes = list(outcomes)
        self.slices: list[slice] = []
        start = 0
        for outcome in self.outcomes:
            self.slices.append(slice(start, start + outcome.n_targets))
            start += outcome.n_targets
        self.width = start

    def split(self, targets: T) -> list[T]:
        """Per outcome, its columns of ``targets`` (an array or tensor of shape (n, width))."""
        return [targets[:, part] for part in self.slices]

    def column(self, outcome: Outcome, offset: int = 0) -> int:
        """Column of ``outcome``'s target number ``offset`` in the concatenated vector."""
        return self.slices[self.outcomes.index(outcome)].start + offset
