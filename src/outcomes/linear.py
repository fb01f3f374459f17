"""Linear (continuous) outcomes: one standardised output, R² and MAE, scatter plots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from src.evaluation.metrics import regression_metrics
from src.evaluation.plots import scatter_plot
from src.outcomes.base import Outcome, numeric_column


@dataclass
class LinearOutcome(Outcome):
    """A numeric column learned as a value.

    The head outputs ``mean + sd * z`` with the training slides' mean and sd, so any column trains with
    the default learning rate; predictions are in the column's units.
    """

    kind: ClassVar[str] = "linear"
    metric_names: ClassVar[tuple[str, ...]] = ("r2", "mae")
    metric_bounds: ClassVar[dict[str, tuple[float, float]]] = {"r2": (-np.inf, 1.0), "mae": (0.0, np.inf)}
    default_loss: ClassVar[dict[str, Any]] = {"_target_": "src.losses.linear.LinearLoss", "name": "mse"}

    @classmethod
    def from_column(cls, table: pd.DataFrame, name: str, event: str | None = None) -> LinearOutcome:
        """Check that ``name`` is numeric."""
        numeric_column(table, name, cls.kind, " (a text outcome needs a categorical loss, e.g. loss=cross_entropy)")
        return cls(name)

    def fit_head(self, loss_fn: Any, part: np.ndarray) -> tuple[float, float]:
        """The training mean and sd scale the head; a loss with ``fit(values)`` sees the values."""
        values = part[:, 0]
        if hasattr(loss_fn, "fit"):
            loss_fn.fit(values)
        return float(np.mean(values)), float(np.std(values)) or 1.0

    def metrics(self, table: pd.DataFrame) -> dict[str, float]:
        """R² and mean absolute error."""
        return regression_metrics(table[f"{self.name}-y_true"].to_numpy(), table[f"{self.name}-y_pred"].to_numpy())

    def plots(self, tables: Mapping[str, pd.DataFrame], plot_dir: Path, epoch: int, title: str) -> list[Path]:
        """Predicted versus true values, one panel per level."""
        return [scatter_plot(tables, self.name, plot_dir / f"scatter_{self.name}_epoch{epoch}.png", title)]
