"""Time-to-event outcomes: a log-risk head, Cox loss, event-aware batches, c-index, Kaplan-Meier plots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from src.outcomes.base import Outcome


@dataclass
class CoxOutcome(Outcome):
    """A survival time column with its 0/1 event column (``event_header``)."""

    kind: ClassVar[str] = "cox"
    metric_names: ClassVar[tuple[str, ...]] = ("c_index",)
    balance_strategies: ClassVar[tuple[str, ...]] = ("event", "tile", "slide", "patient", "none")
    default_balance: ClassVar[str] = "event"
    n_targets: ClassVar[int] = 2
