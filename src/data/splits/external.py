"""External validation (``external``): train on the main dataset, validate on a separately filtered one.

This is Slideflow's ``val_dataset``. The run uses the slides that pass ``dataset.filters`` (training) and
those that pass ``validation.filters`` (validation); a patient in both sets is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src.data.annotations import AnnotationError, apply_filters
from src.data.splits.folds import Fold, Splitter


def _plain(filters: Any) -> dict | None:
    if filters is None:
        return None
    if isinstance(filters, DictConfig):
        filters = OmegaConf.to_container(filters, resolve=True)
    return {str(k): list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in filters.items()}


def study_slides(annotations: pd.DataFrame, filters: Mapping | None, validation_filters: Mapping | None) -> list[str]:
    """The slides a run uses: those passing ``filters``, plus those passing ``validation_filters``."""
    slides = set(apply_filters(annotations, _plain(filters))["slide"])
    if validation_filters:
        slides |= set(apply_filters(annotations, _plain(validation_filters))["slide"])
    return [s for s in annotations["slide"] if s in slides]


@dataclass
class External(Splitter):
    """One fold: train on the slides passing ``train_filters``, validate on those passing ``filters``.

    Args:
        filters: Annotation column → allowed values selecting the validation slides
            (``validation.filters``), e.g. ``{"dataset": ["holdout"]}``.
        train_filters: The same for the training slides (``dataset.filters``; ``None`` = every slide).
    """

    filters: Mapping | None = None
    train_filters: Mapping | None = None
    cacheable: ClassVar[bool] = False  # fully determined by the annotations

    def __post_init__(self) -> None:
        self.filters = _plain(self.filters)
        self.train_filters = _plain(self.train_filters)
        if not self.filters:
            raise ValueError(
                "validation=external needs validation.filters selecting the validation slides, "
                "e.g. validation.filters.dataset=[holdout]"
            )

    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """The one external fold."""
        val_slides = apply_filters(annotations, self.filters)
        train_slides = apply_filters(annotations, self.train_filters)
        if not len(val_slides):
            raise AnnotationError(f"validation.filters={self.filters} selects no slide")
        val = sorted(val_slides["patient"].unique())
        train = sorted(train_slides["patient"].unique())
        both = sorted(set(val) & set(train))
        if both:
            raise AnnotationError(
                f"{len(both)} patient(s) are in both the training set (dataset.filters={self.train_filters}) "
                f"and the external validation set (validation.filters={self.filters}): {both[:10]}. "
                "Exclude them from training, e.g. dataset.filters='{dataset: [train]}'"
            )
        if not train:
            raise AnnotationError(f"dataset.filters={self.train_filters} leaves no training slide")
        return [Fold("fold1", train, val, info={"validation_filters": self.filters})]
