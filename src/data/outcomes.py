"""Outcomes: which annotation columns a model learns, of which kind, and how labels are encoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from src.data.annotations import AnnotationError

OutcomeKind = Literal["categorical", "linear", "cox"]
MAX_CATEGORIES = 20  # a numeric column with more distinct values than this is not a category


@dataclass
class Outcome:
    """One outcome column and its encoding.

    Attributes:
        name: Annotation column.
        kind: ``categorical`` (classes), ``linear`` (a float) or ``cox`` (time + event).
        classes: Sorted class names (categorical only); a label is its index here.
        event: Event column (cox only, 0/1).
    """

    name: str
    kind: OutcomeKind
    classes: list[str] = field(default_factory=list)
    event: str | None = None

    @property
    def n_outputs(self) -> int:
        """Width of this outcome's head."""
        return len(self.classes) if self.kind == "categorical" else 1

    @property
    def n_targets(self) -> int:
        """Slots this outcome takes in a slide's target vector (cox: time and event)."""
        return 2 if self.kind == "cox" else 1

    def encode(self, table: pd.DataFrame) -> np.ndarray:
        """Encode the outcome for each row of ``table`` as an (n_rows, n_targets) float array."""
        if self.kind == "categorical":
            index = {c: i for i, c in enumerate(self.classes)}
            return table[self.name].astype(str).map(index).to_numpy(np.float32)[:, None]
        if self.kind == "linear":
            return table[self.name].astype(float).to_numpy(np.float32)[:, None]
        time = table[self.name].astype(float).to_numpy(np.float32)
        event = table[self.event].astype(float).to_numpy(np.float32)
        return np.stack([time, event], axis=1)

    def to_dict(self) -> dict:
        """JSON-ready description (saved in params.json)."""
        return {"name": self.name, "kind": self.kind, "classes": self.classes, "event": self.event}


def _numeric(table: pd.DataFrame, column: str, kind: str) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & table[column].notna()
    if bad.any():
        sample = table.loc[bad, column].iloc[0]
        slide = table.loc[bad, "slide"].iloc[0]
        hint = " (a text outcome needs a categorical loss, e.g. loss=cross_entropy)" if kind == "linear" else ""
        raise AnnotationError(
            f"Column '{column}' must be numeric for a {kind} loss, but slide '{slide}' has {sample!r}{hint}"
        )
    return values


def build_outcome(table: pd.DataFrame, name: str, kind: OutcomeKind, event: str | None = None) -> Outcome:
    """Check that ``name`` can be learned as ``kind`` and describe its encoding.

    Args:
        table: Annotations of the slides that will be used (already filtered, no blanks).
        name: Outcome column.
        kind: Outcome kind implied by the loss.
        event: Event column for ``cox``.

    Raises:
        AnnotationError: unknown column, or values that do not fit the kind (naming column and value).
    """
    if name not in table.columns:
        raise AnnotationError(f"Unknown outcome '{name}': annotation columns are {list(table.columns)}")
    if kind == "categorical":
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
        return Outcome(name, kind, classes=classes)
    if kind == "linear":
        _numeric(table, name, kind)
        return Outcome(name, kind)
    if kind == "cox":
        if not event:
            raise AnnotationError(f"Cox outcome '{name}' needs an event column (event_header=...)")
        if event not in table.columns:
            raise AnnotationError(f"Unknown event column '{event}': columns are {list(table.columns)}")
        times = _numeric(table, name, kind)
        if (times < 0).any():
            slide = table.loc[times < 0, "slide"].iloc[0]
            raise AnnotationError(f"Column '{name}' has a negative time for slide '{slide}'")
        events = _numeric(table, event, kind)
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
        return Outcome(name, kind, event=event)
    raise AnnotationError(f"Unknown outcome kind '{kind}' for '{name}'")


def check_patient_labels(table: pd.DataFrame, outcomes: list[Outcome]) -> None:
    """Raise when one patient's slides carry different labels for an outcome.

    Raises:
        AnnotationError: naming the patient(s), the outcome and the conflicting values.
    """
    for outcome in outcomes:
        columns = [outcome.name] + ([outcome.event] if outcome.event else [])
        for column in columns:
            distinct = table.groupby("patient")[column].nunique(dropna=False)
            conflicting = distinct[distinct > 1].index.tolist()
            if conflicting:
                patient = conflicting[0]
                values = sorted(table.loc[table.patient == patient, column].astype(str).unique())
                raise AnnotationError(
                    f"Patient(s) {conflicting[:5]} have slides with different '{column}' labels "
                    f"(patient '{patient}': {values}); a patient must carry one label"
                )
