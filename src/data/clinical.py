"""Clinical (slide-level) inputs: numeric columns standardised, categorical columns one-hot."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from src.data.annotations import AnnotationError
from src.data.dataset import Dataset

log = logging.getLogger(__name__)


@dataclass
class ClinicalEncoder:
    """Encodes ``input_header`` columns into one float vector per slide.

    Fitted on the training fold only; the fit is saved with the model (``to_dict``). Numeric columns
    (every value parses as a number) are standardised with the training mean and sd; other columns are
    one-hot over the training categories. A category unseen in training raises an error naming the
    column, the slide and the value, rather than being silently mapped (an "other" bucket would give
    such slides an input the model never learned from). A column mixing numbers and text is an error.
    """

    columns: list[str]
    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Length of the encoded vector."""
        return len(self.numeric) + sum(len(v) for v in self.categories.values())

    @classmethod
    def fit(cls, table: pd.DataFrame, columns: Sequence[str]) -> ClinicalEncoder:
        """Fit on the training slides' annotations."""
        encoder = cls(list(columns))
        for column in columns:
            if column not in table.columns:
                raise AnnotationError(f"Unknown input_header column '{column}': columns are {list(table.columns)}")
            values = pd.to_numeric(table[column], errors="coerce")
            if values.notna().all():
                sd = float(values.std(ddof=0)) or 1.0
                encoder.numeric[column] = (float(values.mean()), sd)
            elif values.notna().any():
                bad = table.loc[values.isna()].iloc[0]
                raise AnnotationError(
                    f"Clinical column '{column}' mixes numbers and text: slide '{bad['slide']}' has "
                    f"{bad[column]!r} while others are numbers. Numeric columns are standardised and text "
                    "columns one-hot encoded: make every value a number (leave unknowns blank) or every value text"
                )
            else:
                encoder.categories[column] = sorted(table[column].astype(str).unique())
        return encoder

    @classmethod
    def from_dict(cls, fit: dict) -> ClinicalEncoder:
        """Rebuild an encoder from :meth:`to_dict` output (as saved in params.json and checkpoints)."""
        return cls(
            list(fit["columns"]),
            numeric={k: (float(v[0]), float(v[1])) for k, v in fit.get("numeric", {}).items()},
            categories={k: list(v) for k, v in fit.get("categories", {}).items()},
        )

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Encode each row of ``table`` as an (n_rows, width) float32 array, in ``columns`` order."""
        parts = []
        for column in self.columns:
            if column in self.numeric:
                mean, sd = self.numeric[column]
                values = pd.to_numeric(table[column], errors="coerce")
                if values.isna().any():
                    bad = table.loc[values.isna()].iloc[0]
                    raise AnnotationError(
                        f"Clinical column '{column}' is numeric, but slide '{bad['slide']}' has {bad[column]!r}"
                    )
                parts.append(((values.to_numpy(np.float32) - mean) / sd)[:, None])
            else:
                known = self.categories[column]
                values = table[column].astype(str)
                unknown = ~values.isin(known)
                if unknown.any():
                    bad = table.loc[unknown].iloc[0]
                    raise AnnotationError(
                        f"Clinical column '{column}': slide '{bad['slide']}' has category "
                        f"{bad[column]!r} not seen in training {known}; recode it to a known category or "
                        "leave it blank (slides with blank clinical inputs are dropped)"
                    )
                onehot = np.zeros((len(table), len(known)), np.float32)
                onehot[np.arange(len(table)), values.map({c: i for i, c in enumerate(known)})] = 1
                parts.append(onehot)
        if not parts:
            return np.zeros((len(table), 0), np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-ready fit (saved in params.json)."""
        return {
            "columns": list(self.columns),
            "numeric": {k: [mean, sd] for k, (mean, sd) in self.numeric.items()},
            "categories": {k: list(v) for k, v in self.categories.items()},
        }


def drop_blank_clinical(dataset: Dataset, columns: Sequence[str], policy: str, where: str) -> Dataset:
    """The dataset without slides that have a blank clinical input (``clinical_blank``).

    Args:
        dataset: The slides.
        columns: The ``input_header`` columns.
        policy: ``drop`` (logged with the count) or ``error``.
        where: What the slides are (e.g. ``fold1 training``), named in the log and the error.

    Raises:
        AnnotationError: ``policy`` is ``error`` and a slide has a blank value (naming the slides).
    """
    if not columns:
        return dataset
    kept = dataset.filter_blank(columns)
    dropped = len(dataset) - len(kept)
    if dropped and str(getattr(policy, "value", policy)) == "error":
        blank = sorted(set(dataset.slides()) - set(kept.slides()))
        raise AnnotationError(
            f"{dropped} {where} slide(s) have blank clinical inputs {list(columns)} "
            f"(clinical_blank=error): {blank[:10]}"
        )
    if dropped:
        log.warning("Dropped %d %s slide(s) with blank clinical inputs %s", dropped, where, list(columns))
    return kept


def fold_clinical(
    train_ds: Dataset, val_ds: Dataset | None, columns: Sequence[str], policy: str, where: str
) -> tuple[Dataset, Dataset | None, ClinicalEncoder]:
    """A fold's slides without blank clinical inputs (``clinical_blank``), and the encoder fitted on training.

    Args:
        train_ds: The fold's training slides.
        val_ds: Its validation slides (None: no validation).
        columns: The ``input_header`` columns (none: nothing dropped, an empty encoder).
        policy: ``clinical_blank`` (``drop`` or ``error``).
        where: Name of the fold, used in messages.
    """
    train_ds = drop_blank_clinical(train_ds, columns, policy, f"{where} training")
    if val_ds is not None:
        val_ds = drop_blank_clinical(val_ds, columns, policy, f"{where} validation")
    encoder = ClinicalEncoder.fit(train_ds.annotations, columns) if columns else ClinicalEncoder([])
    return train_ds, val_ds, encoder
