"""Hold-out strategies: ``fixed`` (one hold-out), ``bootstrap`` (K repeated hold-outs) and ``none``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from src.data.annotations import AnnotationError
from src.data.splits.folds import Fold, Splitter, complement, patient_table
from src.data.splits.kfold import check_k


def check_fraction(val_fraction: float) -> float:
    """``val_fraction`` as a float strictly between 0 and 1."""
    if not 0 < float(val_fraction) < 1:
        raise ValueError(f"validation.val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    return float(val_fraction)


def holdout_size(n_patients: int, val_fraction: float) -> int:
    """Validation patients: ``int(val_fraction · n)`` as Slideflow, but at least 1 and at most n − 1."""
    if n_patients < 2:
        raise AnnotationError(f"A hold-out needs at least 2 patients, got {n_patients}")
    return min(max(int(val_fraction * n_patients), 1), n_patients - 1)


def stratified_holdout(patients: pd.DataFrame, n_val: int, rng: np.random.Generator) -> list[str]:
    """Draw ``n_val`` patients so that each stratum gets its proportional share (rounded, within one).

    Shares are floor(n_val · n_stratum / n); the patients left over go to the strata with the largest
    remainders (ties broken at random).
    """
    groups = [g for _, g in sorted(patients.groupby("stratum"), key=lambda g: str(g[0]))]
    sizes = np.array([len(g) for g in groups])
    exact = n_val * sizes / sizes.sum()
    quota = np.floor(exact).astype(int)
    left = n_val - int(quota.sum())
    if left:
        order = np.lexsort((rng.random(len(groups)), -(exact - quota)))
        quota[order[:left]] += 1
    chosen: list[str] = []
    for group, q in zip(groups, quota):
        ids = group["patient"].to_numpy()
        chosen.extend(ids[rng.permutation(len(ids))[:q]].tolist())
    return sorted(chosen)


@dataclass
class Fixed(Splitter):
    """One hold-out of ``val_fraction`` of the patients, stratified by categorical outcome labels.

    Args:
        val_fraction: Fraction of patients validated on.
    """

    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        self.val_fraction = check_fraction(self.val_fraction)

    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """One fold."""
        patients = patient_table(annotations, strata)
        val = stratified_holdout(patients, holdout_size(len(patients), self.val_fraction), np.random.default_rng(seed))
        return [Fold("fold1", complement(patients["patient"].tolist(), val), val)]


@dataclass
class Bootstrap(Splitter):
    """K independent hold-outs of ``val_fraction`` of the patients (Slideflow's ``bootstrap``).

    Each hold-out is drawn without replacement and stratified like :class:`Fixed`; a patient may be
    validated in several hold-outs or in none. This is repeated hold-out (Monte-Carlo cross-validation),
    not resampling with replacement, as in Slideflow.

    Args:
        k: Number of hold-outs.
        val_fraction: Fraction of patients validated on in each.
    """

    k: int = 3
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        self.k = check_k(self.k)
        self.val_fraction = check_fraction(self.val_fraction)

    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """K hold-outs."""
        patients = patient_table(annotations, strata)
        n_val = holdout_size(len(patients), self.val_fraction)
        rng = np.random.default_rng(seed)
        everyone = patients["patient"].tolist()
        folds = []
        for i in range(1, self.k + 1):
            val = stratified_holdout(patients, n_val, rng)
            folds.append(Fold(f"fold{i}", complement(everyone, val), val))
        return folds


@dataclass
class NoValidation(Splitter):
    """Train on every patient; nothing is validated (models and training logs are still saved)."""

    cacheable: ClassVar[bool] = False

    def split(self, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> list[Fold]:
        """One fold that trains on everyone."""
        return [Fold("fold1", sorted(annotations["patient"].astype(str).unique()), [])]
