"""Folds, the per-patient table every strategy splits, and the splitter interface.

A split is always by patient: a patient's slides are never divided between training and validation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import pandas as pd

from src.data.annotations import AnnotationError


@dataclass
class Fold:
    """One training/validation partition of patients.

    Attributes:
        name: ``fold1``, ``fold2``, ... (numbered from 1 in the order the strategy made them).
        train_patients: Patients trained on.
        val_patients: Patients validated on (empty for ``validation=none``).
        info: What defines the fold, e.g. ``{"sites": [...]}`` or ``{"value": "site_A"}``.
    """

    name: str
    train_patients: list[str]
    val_patients: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        out: dict[str, Any] = {
            "name": self.name,
            "train_patients": self.train_patients,
            "val_patients": self.val_patients,
        }
        if self.info:
            out["info"] = self.info
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Fold:
        """Inverse of :meth:`to_dict` (extra keys such as slide lists are ignored)."""
        return cls(
            name=str(data["name"]),
            train_patients=[str(p) for p in data["train_patients"]],
            val_patients=[str(p) for p in data["val_patients"]],
            info=dict(data.get("info") or {}),
        )


def patient_values(annotations: pd.DataFrame, column: str, what: str | None = None) -> pd.Series:
    """The value of ``column`` per patient (sorted by patient), checking that each patient has one.

    Args:
        annotations: Slide annotations (columns ``patient`` and ``column``).
        column: Annotation column that must be constant within a patient.
        what: How to name the column in errors (defaults to the column name).

    Raises:
        AnnotationError: unknown column, blank values, or a patient whose slides disagree (naming them).
    """
    what = what or f"'{column}'"
    if column not in annotations.columns:
        raise AnnotationError(f"Unknown annotation column {what}; columns are {list(annotations.columns)}")
    values = annotations[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        slides = annotations.loc[blank, "slide"].tolist()
        raise AnnotationError(f"{len(slides)} slide(s) have a blank {what}: {slides[:10]}")
    distinct = annotations.groupby("patient")[column].agg(lambda s: sorted(set(s.astype(str))))
    conflicting = distinct[distinct.map(len) > 1]
    if len(conflicting):
        examples = "; ".join(f"patient '{p}': {v}" for p, v in conflicting.head(5).items())
        raise AnnotationError(
            f"{len(conflicting)} patient(s) have slides with different {what} values ({examples}); "
            "a patient must carry one value"
        )
    return distinct.map(lambda v: v[0]).sort_index()


def patient_table(
    annotations: pd.DataFrame, strata: Sequence[str] | None = None, columns: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per patient (sorted) with its stratum: the outcome labels joined with ``-``.

    Args:
        annotations: Slide annotations.
        strata: Categorical outcome columns to stratify on; ``None`` or empty gives every patient the
            stratum ``""`` (no stratification, as for linear and time-to-event outcomes).
        columns: Further per-patient columns to carry (e.g. the site), each checked constant per patient.

    Raises:
        AnnotationError: a patient whose slides disagree on a stratum or column (naming the patient).
    """
    table = pd.DataFrame({"patient": sorted(annotations["patient"].astype(str).unique())})
    parts = [patient_values(annotations, c).reindex(table.patient).to_numpy() for c in strata or []]
    table["stratum"] = ["-".join(v) for v in zip(*parts)] if parts else ""
    for column in columns:
        table[column] = patient_values(annotations, column).reindex(table.patient).to_numpy()
    return table


def check_folds(folds: Iterable[Fold], patients: Iterable[str] | None = None) -> None:
    """Raise if any fold leaks a patient into both sets or names a patient outside ``patients``.

    Raises:
        AnnotationError: naming the fold and the patients.
    """
    known = set(patients) if patients is not None else None
    for fold in folds:
        both = sorted(set(fold.train_patients) & set(fold.val_patients))
        if both:
            raise AnnotationError(f"Patients in both training and validation of {fold.name}: {both[:10]}")
        if known is not None:
            unknown = sorted((set(fold.train_patients) | set(fold.val_patients)) - known)
            if unknown:
                raise AnnotationError(
                    f"{fold.name} names {len(unknown)} patient(s) that are not in the dataset: {unknown[:10]}"
                )


def select_folds(folds: list[Fold], wanted: Sequence[int] | None) -> list[Fold]:
    """The folds numbered in ``wanted`` (1-based, e.g. ``[1, 3]``); all when ``None`` or empty.

    Raises:
        ValueError: a number outside ``1..len(folds)`` (listing the valid ones).
    """
    if not wanted:
        return list(folds)
    valid = list(range(1, len(folds) + 1))
    bad = [w for w in wanted if int(w) not in valid]
    if bad:
        raise ValueError(f"validation.folds={list(wanted)}: fold(s) {bad} do not exist; choose from {valid}")
    return [folds[int(w) - 1] for w in sorted(set(int(w) for w in wanted))]


class Splitter(ABC):
    """A validation strategy: turns the slide annotations into patient-level folds.

    Subclasses are dataclasses whose fields are the strategy's settings (``k``, ``val_fraction``, ...);
    those fields, the seed, the outcome labels and the patient list key the project's splits cache.

    Attributes:
        cacheable: Whether splits are cached and re-used (strategies that draw at random).
        key_columns: Per-patient annotation columns, besides the outcome labels, that the split depends on.
    """

    cacheable: ClassVar[bool] = True

    @property
    def key_columns(self) -> list[str]:
        """Annotation columns (besides the outcome labels) that the folds depend on."""
        return []

    def params(self) -> dict[str, Any]:
        """The strategy's settings, JSON-ready."""
        return asdict(self)  # type: ignore[call-overload]

    @abstractmethod
    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """Split the slides' patients into folds.

        Args:
            annotations: One row per slide (``patient``, ``slide`` and the annotation columns).
            strata: Categorical outcome columns to balance folds on (empty: no stratification).
            seed: Random seed; the same seed gives the same folds.
        """


def complement(patients: Sequence[str], val: Iterable[str]) -> list[str]:
    """``patients`` minus ``val``, in the order of ``patients``."""
    held = set(val)
    return [p for p in patients if p not in held]
