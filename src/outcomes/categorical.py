"""Categorical outcomes: classes, softmax heads, AUROC and accuracy, ROC curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from src.outcomes.base import Outcome


@dataclass
class CategoricalOutcome(Outcome):
    """A column of class labels (text, or integers with at most ``MAX_CATEGORIES`` values)."""

    kind: ClassVar[str] = "categorical"
    metric_names: ClassVar[tuple[str, ...]] = ("auroc", "accuracy")
    balance_strategies: ClassVar[tuple[str, ...]] = ("tile", "slide", "patient", "category", "none")
    default_balance: ClassVar[str] = "category"
