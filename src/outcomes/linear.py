"""Linear (continuous) outcomes: one standardised output, R² and MAE, scatter plots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from src.outcomes.base import Outcome


@dataclass
class LinearOutcome(Outcome):
    """A numeric column learned as a value."""

    kind: ClassVar[str] = "linear"
    metric_names: ClassVar[tuple[str, ...]] = ("r2", "mae")
