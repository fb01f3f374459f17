"""Loss for categorical outcomes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class CrossEntropy(nn.Module):
    """Softmax cross-entropy on one categorical head.

    Args:
        class_weights: ``None``, ``"balanced"`` (inverse class frequency in the training slides,
            fitted by :meth:`fit`), or one weight per class.
        label_smoothing: As in ``torch.nn.CrossEntropyLoss``.
    """

    def __init__(self, class_weights: str | Sequence[float] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.class_weights = class_weights
        self.label_smoothing = label_smoothing
        weights = (
            None if class_weights in (None, "balanced") else torch.tensor(list(class_weights), dtype=torch.float32)
        )
        self.register_buffer("weight", weights)

    def fit(self, labels: np.ndarray, n_classes: int) -> None:
        """Set ``balanced`` class weights from the training labels (class indices)."""
        if self.class_weights == "balanced":
            counts = np.bincount(labels.astype(int), minlength=n_classes).astype(np.float32)
            weights = counts.sum() / (n_classes * np.maximum(counts, 1))
            self.weight = torch.tensor(weights, dtype=torch.float32)
        elif self.weight is not None and len(self.weight) != n_classes:
            raise ValueError(f"class_weights has {len(self.weight)} values but the outcome has {n_classes} classes")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``output`` (batch, classes) logits; ``target`` (batch, 1) class indices stored as floats."""
        weight = self.weight.to(output.dtype) if self.weight is not None else None
        return nn.functional.cross_entropy(
            output, target[:, 0].long(), weight=weight, label_smoothing=self.label_smoothing
        )
