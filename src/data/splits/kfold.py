"""K-fold strategies: stratified random folds (``k_fold``) and folds given by a column (``k_fold_manual``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from src.data.annotations import AnnotationError
from src.data.splits.folds import Fold, Splitter, complement, patient_table, patient_values


def check_k(k: int, what: str = "validation.k") -> int:
    """``k`` as an int, at least 2."""
    if int(k) != k or k < 2:
        raise ValueError(f"{what} must be an integer >= 2, got {k!r}")
    return int(k)


def stratified_chunks(patients: pd.DataFrame, k: int, rng: np.random.Generator) -> list[list[str]]:
    """Deal patients into ``k`` groups, each stratum as evenly as possible (Slideflow's balanced split).

    Each stratum is shuffled and cut into ``k`` contiguous chunks whose sizes differ by at most one. The
    chunks with one extra patient are dealt round-robin across strata, so the group sizes also differ by
    at most one overall.
    """
    groups: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for _, stratum in sorted(patients.groupby("stratum"), key=lambda g: str(g[0])):
        ids = stratum["patient"].to_numpy()[rng.permutation(len(stratum))]
        for j, part in enumerate(np.array_split(ids, k)):
            groups[(j + offset) % k].extend(part.tolist())
        offset += len(ids) % k
    return groups


@dataclass
class KFold(Splitter):
    """K folds of patients; stratified by the joined categorical outcome labels, random otherwise.

    Every patient is validated exactly once; within each stratum the folds differ by at most one patient.

    Args:
        k: Number of folds.
    """

    k: int = 3

    def __post_init__(self) -> None:
        self.k = check_k(self.k)

    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """K folds (see class doc)."""
        patients = patient_table(annotations, strata)
        if len(patients) < self.k:
            raise AnnotationError(f"Cannot make {self.k} folds from {len(patients)} patient(s); lower validation.k")
        groups = stratified_chunks(patients, self.k, np.random.default_rng(seed))
        everyone = patients["patient"].tolist()
        return [Fold(f"fold{i}", complement(everyone, val), sorted(val)) for i, val in enumerate(groups, start=1)]


@dataclass
class KFoldManual(Splitter):
    """One fold per distinct value of an annotation column (Slideflow's ``k-fold-manual``).

    Fold *i* validates on the patients with the *i*-th value (sorted) and trains on all others. A patient's
    slides must share one value.

    Args:
        column: The annotation column holding each patient's fold.
    """

    column: str | None = None
    cacheable: ClassVar[bool] = False  # fully determined by the annotations

    def __post_init__(self) -> None:
        if not self.column:
            raise ValueError("validation.column is required for k_fold_manual: the annotation column giving the fold")

    @property
    def key_columns(self) -> list[str]:
        """The fold column."""
        return [str(self.column)]

    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """One fold per value of ``column``."""
        values = patient_values(annotations, str(self.column), what=f"fold column '{self.column}' (validation.column)")
        distinct = sorted(values.unique())
        if len(distinct) < 2:
            raise AnnotationError(
                f"validation.column='{self.column}' has a single value {distinct}: k_fold_manual needs at least two"
            )
        everyone = values.index.tolist()
        folds = []
        for i, value in enumerate(distinct, start=1):
            val = values.index[values == value].tolist()
            folds.append(Fold(f"fold{i}", complement(everyone, val), val, info={str(self.column): value}))
        return folds
