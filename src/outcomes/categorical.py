"""Categorical outcomes: classes, softmax heads, AUROC and accuracy, ROC curves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from src.errors import AnnotationError
from src.evaluation.heatmaps import HeatmapLayer
from src.evaluation.metrics import categorical_metrics
from src.evaluation.plots import roc_plot
from src.outcomes.base import Outcome

MAX_CATEGORIES = 20  # a numeric column with more distinct values than this is not a category


@dataclass
class CategoricalOutcome(Outcome):
    """A column of class labels (text, or integers with at most ``MAX_CATEGORIES`` values).

    A label is the class index in the sorted class names; the head outputs one logit per class and the
    prediction columns are the softmax probabilities ``{outcome}-y_pred{i}``.
    """

    kind: ClassVar[str] = "categorical"
    metric_names: ClassVar[tuple[str, ...]] = ("auroc", "accuracy")
    metric_bounds: ClassVar[dict[str, tuple[float, float]]] = {"auroc": (0.0, 1.0), "accuracy": (0.0, 1.0)}
    balance_strategies: ClassVar[tuple[str, ...]] = ("tile", "slide", "patient", "category", "none")
    default_balance: ClassVar[str] = "category"
    default_loss: ClassVar[dict[str, Any]] = {"_target_": "src.losses.categorical.CrossEntropy"}

    @classmethod
    def from_column(cls, table: pd.DataFrame, name: str, event: str | None = None) -> CategoricalOutcome:
        """Check that ``name`` holds classes (not a continuous number) and list them."""
        numeric = pd.to_numeric(table[name], errors="coerce")
        fractional = numeric.notna() & (numeric != numeric.round())
        if numeric.notna().all() and (numeric.nunique() > MAX_CATEGORIES or fractional.any()):
            row = table.loc[fractional].iloc[0] if fractional.any() else table.iloc[0]
            why = "fractional values" if fractional.any() else f"more than {MAX_CATEGORIES} values"
            raise AnnotationError(
                f"Outcome '{name}' looks continuous ({numeric.nunique()} distinct numeric values, {why}; e.g. "
                f"slide '{row['slide']}': {row[name]}): a categorical loss does not fit it; use a linear "
                "loss (e.g. loss=mse), or write the classes as text"
            )
        classes = sorted(table[name].astype(str).unique())
        if len(classes) < 2:
            raise AnnotationError(f"Outcome '{name}' has a single class {classes}: nothing to learn")
        return cls(name, classes=classes)

    @property
    def n_outputs(self) -> int:
        """One logit per class."""
        return len(self.classes)

    def encode(self, table: pd.DataFrame) -> np.ndarray:
        """Class indices (as float32) of the rows of ``table``."""
        index = {c: i for i, c in enumerate(self.classes)}
        return table[self.name].astype(str).map(index).to_numpy(np.float32)[:, None]

    def label(self, part: np.ndarray) -> int:
        """The class index."""
        return int(part[0])

    def strata(self) -> list[str]:
        """Folds keep each class's share."""
        return [self.name]

    def categories(self, part: np.ndarray) -> np.ndarray:
        """Class index of each slide."""
        return part[:, 0].astype(int)

    def fit_head(self, loss_fn: Any, part: np.ndarray) -> tuple[float, float]:
        """Let a loss with ``fit(labels, n_classes)`` set its class weights; logits need no scaling."""
        if hasattr(loss_fn, "fit"):
            loss_fn.fit(part[:, 0], len(self.classes))
        return 0.0, 1.0

    def train_metrics(self, output: torch.Tensor, part: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch accuracy."""
        return {"accuracy": (output.argmax(1) == part[:, 0].long()).float().mean()}

    def predict(self, output: torch.Tensor) -> np.ndarray:
        """Softmax probabilities."""
        return torch.softmax(output.float(), dim=1).numpy()

    def output_columns(self) -> list[str]:
        """One probability column per class."""
        return [f"{self.name}-y_pred{i}" for i in range(len(self.classes))]

    def tile_columns(self, output: torch.Tensor, part: np.ndarray) -> dict[str, np.ndarray]:
        """True class index and class probabilities."""
        probs = self.predict(output)
        columns = {f"{self.name}-y_true": part[:, 0].astype(int)}
        columns.update({column: probs[:, i] for i, column in enumerate(self.output_columns())})
        return columns

    def metrics(self, table: pd.DataFrame) -> dict[str, float]:
        """AUROC (one-vs-rest over present classes) and accuracy."""
        probs = table[self.output_columns()].to_numpy()
        return categorical_metrics(table[f"{self.name}-y_true"].to_numpy().astype(int), probs)

    def plots(self, tables: Mapping[str, pd.DataFrame], plot_dir: Path, epoch: int, title: str) -> list[Path]:
        """ROC curves, one panel per level."""
        path = plot_dir / f"roc_{self.name}_epoch{epoch}.png"
        return [roc_plot(tables, self.name, self.classes, self.output_columns(), path, title)]

    def heatmap_layers(self, head_mean: float = 0.0, head_scale: float = 1.0) -> list[HeatmapLayer]:
        """One panel per class probability (two classes: the second only), ``coolwarm`` from 0 to 1, 0.5 white."""
        shown = list(enumerate(self.classes))
        if len(shown) == 2:
            shown = shown[1:]
        columns = self.output_columns()
        return [
            HeatmapLayer(columns[i], f"P({name})", f"probability of {name}", "coolwarm", 0.0, 1.0, 0.5)
            for i, name in shown
        ]
