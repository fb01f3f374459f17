"""Time-to-event outcomes: a log-risk head, event-aware batches, Harrell's c-index, Kaplan-Meier plots.

The head's score is a log-risk: higher score = higher hazard = shorter survival (a Slideflow score is
minus ours). Targets are (time, event) per slide; the event column is ``event_header``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Sampler

from src.errors import AnnotationError
from src.evaluation.heatmaps import HeatmapLayer
from src.evaluation.metrics import concordance_index
from src.evaluation.survival_plots import km_plot
from src.outcomes.base import Outcome, numeric_column
from src.samplers.events import EventBatchSampler

log = logging.getLogger(__name__)

#: Heatmap scale of the log-risk: ±1 (a hazard ratio of e ≈ 2.7 either way), white at 0.
RISK_SCALE = 1.0


@dataclass
class CoxOutcome(Outcome):
    """A survival time column with its 0/1 event column (``event_header``)."""

    kind: ClassVar[str] = "cox"
    metric_names: ClassVar[tuple[str, ...]] = ("c_index",)
    metric_bounds: ClassVar[dict[str, tuple[float, float]]] = {"c_index": (0.0, 1.0)}
    balance_strategies: ClassVar[tuple[str, ...]] = ("event", "tile", "slide", "patient", "none")
    default_balance: ClassVar[str] = "event"
    n_targets: ClassVar[int] = 2
    combinable: ClassVar[bool] = False
    needs_event: ClassVar[bool] = True
    default_loss: ClassVar[dict[str, Any]] = {"_target_": "src.losses.cox.CoxLoss"}

    @classmethod
    def from_column(cls, table: pd.DataFrame, name: str, event: str | None = None) -> CoxOutcome:
        """Check non-negative numeric times and a 0/1 event column with at least one event."""
        if not event:
            raise AnnotationError(f"Cox outcome '{name}' needs an event column (event_header=...)")
        if event not in table.columns:
            raise AnnotationError(f"Unknown event column '{event}': columns are {list(table.columns)}")
        times = numeric_column(table, name, cls.kind)
        if (times < 0).any():
            slide = table.loc[times < 0, "slide"].iloc[0]
            raise AnnotationError(f"Column '{name}' has a negative time for slide '{slide}'")
        events = numeric_column(table, event, cls.kind)
        bad = ~events.isin([0, 1])
        if bad.any():
            raise AnnotationError(
                f"Event column '{event}' must hold 0 or 1; slide '{table.loc[bad, 'slide'].iloc[0]}' "
                f"has {table.loc[bad, event].iloc[0]!r}"
            )
        if not (events == 1).any():
            raise AnnotationError(
                f"Event column '{event}' has no observed event (all {len(events)} slides censored): "
                "a Cox model cannot learn from it"
            )
        return cls(name, event=event)

    @property
    def columns(self) -> list[str]:
        """The time and the event column."""
        assert self.event is not None  # from_column requires it
        return [self.name, self.event]

    def encode(self, table: pd.DataFrame) -> np.ndarray:
        """(time, event) per row."""
        time = table[self.name].astype(float).to_numpy(np.float32)
        event = table[self.event].astype(float).to_numpy(np.float32)
        return np.stack([time, event], axis=1)

    def label(self, part: np.ndarray) -> tuple[float, int]:
        """``(time, event)``."""
        return float(part[0]), int(part[1])

    def strata(self) -> list[str]:
        """Folds keep the share of events."""
        assert self.event is not None  # from_column requires it
        return [self.event]

    def tile_weights(
        self, strategy: str, slide_idx: np.ndarray, slide_patients: Sequence[str], part: np.ndarray, key: str
    ) -> np.ndarray | None:
        """As the base class; ``event`` batches draw patients evenly, so as weights it means ``patient``."""
        strategy = self.resolve_balance(strategy, key)
        return super().tile_weights(
            "patient" if strategy == "event" else strategy, slide_idx, slide_patients, part, key
        )

    def sampler(
        self,
        strategy: str,
        slide_idx: np.ndarray,
        slide_patients: Sequence[str],
        part: np.ndarray,
        batch_size: int,
        seed: int,
        loss_cfg: Mapping[str, Any],
    ) -> Sampler[int] | None:
        """``event`` (and ``auto``): an :class:`EventBatchSampler` (``loss.min_events_per_batch``)."""
        if self.resolve_balance(strategy) != "event":
            return super().sampler(strategy, slide_idx, slide_patients, part, batch_size, seed, loss_cfg)
        min_events = int(loss_cfg.get("min_events_per_batch", 1))
        return EventBatchSampler(slide_idx, slide_patients, part[:, 1], batch_size, min_events, seed=seed)

    def check_training(self, part: np.ndarray, where: str) -> None:
        """The Cox partial likelihood needs at least one observed event among the training slides."""
        if not (part[:, 1] == 1).any():
            raise AnnotationError(
                f"The training set of {where} has no observed event in '{self.event}' "
                f"({len(part)} slide(s), all censored): the Cox partial likelihood needs at least one event. "
                "Use fewer folds (validation.k) or more patients with events."
            )

    def check_validation(self, part: np.ndarray, where: str) -> None:
        """Warn when no validation slide has an event (the c-index is then undefined)."""
        if len(part) and not (part[:, 1] == 1).any():
            log.warning("The validation set of %s has no observed event: its c-index is undefined", where)

    def output_columns(self) -> list[str]:
        """The predicted log-risk."""
        return [f"{self.name}-risk"]

    def truth_columns(self) -> list[str]:
        """Time and event."""
        return [f"{self.name}-time", f"{self.name}-event"]

    def tile_columns(self, output: torch.Tensor, part: np.ndarray) -> dict[str, np.ndarray]:
        """Time, event and risk."""
        return {
            f"{self.name}-time": part[:, 0],
            f"{self.name}-event": part[:, 1].astype(int),
            f"{self.name}-risk": self.predict(output)[:, 0],
        }

    def metrics(self, table: pd.DataFrame) -> dict[str, float]:
        """Harrell's c-index (higher risk = earlier event)."""
        name = self.name
        return {
            "c_index": concordance_index(
                table[f"{name}-time"].to_numpy(), table[f"{name}-risk"].to_numpy(), table[f"{name}-event"].to_numpy()
            )
        }

    def plots(self, tables: Mapping[str, pd.DataFrame], plot_dir: Path, epoch: int, title: str) -> list[Path]:
        """Kaplan-Meier curves of the validation patients split at the median predicted risk."""
        path = plot_dir / f"km_{self.name}_epoch{epoch}.png"
        return [km_plot(tables["patient"], self.name, path, title)]

    def heatmap_layers(self, head_mean: float = 0.0, head_scale: float = 1.0) -> list[HeatmapLayer]:
        """The log-risk, ``coolwarm`` from -1 to 1 (red: higher hazard), white at 0.

        The partial likelihood does not fix the zero of the score, so a model's risks may all sit to one
        side; the heatmap's ``.npz`` keeps the raw values for another scale.
        """
        return [
            HeatmapLayer(
                f"{self.name}-risk",
                f"{self.name} risk",
                "log-risk (higher = shorter survival)",
                "coolwarm",
                -RISK_SCALE,
                RISK_SCALE,
                0.0,
            )
        ]
