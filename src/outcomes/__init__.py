"""Outcome kinds: one module per kind, each defining one :class:`Outcome` subclass.

An outcome kind knows everything that differs between kinds: the width of its head, how a column is
checked and encoded into targets, the default loss, the training-balance strategies it accepts and its
sampler, how outputs become prediction-table columns, its metrics and plots, and the columns that
stratify the folds. Nothing outside this package branches on the kind.

Adding a kind is one module here (``src/outcomes/<kind>.py``, defining a subclass with ``kind = "<kind>"``)
plus one loss YAML (``conf/loss/<name>.yaml`` with ``kind: <kind>``).
"""

from src.evaluation.predictions import LEVELS
from src.outcomes.base import (
    Outcome,
    available_kinds,
    check_targets,
    foreign_kinds,
    kind_problems,
    metric_bounds,
    outcome_from_dict,
    outcome_kind,
    outcomes_from_file,
)
from src.outcomes.layout import TargetLayout

__all__ = [
    "LEVELS",
    "Outcome",
    "TargetLayout",
    "available_kinds",
    "check_targets",
    "foreign_kinds",
    "kind_problems",
    "metric_bounds",
    "outcome_from_dict",
    "outcome_kind",
    "outcomes_from_file",
]
