"""Checks across outcomes: one label per patient, and the kind of an outcome column left unspecified."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from src.errors import AnnotationError
from src.outcomes.base import Outcome
from src.outcomes.categorical import MAX_CATEGORIES


def infer_kind(values: pd.Series) -> str:
    """``linear`` for numeric columns with fractional values or many distinct values, else ``categorical``."""
    numeric = pd.to_numeric(values.dropna(), errors="coerce")
    if numeric.notna().all() and (numeric.nunique() > MAX_CATEGORIES or (numeric != numeric.round()).any()):
        return "linear"
    return "categorical"


def check_patient_labels(table: pd.DataFrame, outcomes: Sequence[Outcome]) -> None:
    """Raise when one patient's slides carry different labels for an outcome.

    Raises:
        AnnotationError: naming the patient(s), the outcome and the conflicting values.
    """
    for outcome in outcomes:
        for column in outcome.columns:
            distinct = table.groupby("patient")[column].nunique(dropna=False)
            conflicting = distinct[distinct > 1].index.tolist()
            if conflicting:
                patient = conflicting[0]
                values = sorted(table.loc[table.patient == patient, column].astype(str).unique())
                raise AnnotationError(
                    f"Patient(s) {conflicting[:5]} have slides with different '{column}' labels "
                    f"(patient '{patient}': {values}); a patient must carry one label"
                )
