"""Patient-level validation splits. A patient's slides are never split across training and validation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Fold:
    """One training/validation partition of patients."""

    name: str
    train_patients: list[str]
    val_patients: list[str]

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"name": self.name, "train_patients": self.train_patients, "val_patients": self.val_patients}


def patient_table(annotations: pd.DataFrame, strata: list[str] | None = None) -> pd.DataFrame:
    """One row per patient with its stratification label (outcome labels joined with ``-``).

    Args:
        annotations: Slide annotations (patient labels already checked consistent).
        strata: Columns to stratify on; ``None`` or empty means no stratification.
    """
    columns = ["patient"] + (strata or [])
    patients = annotations[columns].drop_duplicates("patient").sort_values("patient")
    if strata:
        patients["stratum"] = patients[strata].astype(str).agg("-".join, axis=1)
    else:
        patients["stratum"] = ""
    return patients[["patient", "stratum"]].reset_index(drop=True)


@dataclass
class KFold:
    """K folds of patients, stratified by outcome label when one is given (Slideflow's ``k-fold``).

    Patients are shuffled with ``seed``; each stratum's list is cut into ``k`` contiguous chunks and
    fold *i* validates on the *i*-th chunk of every stratum, so every patient is validated exactly once.

    Args:
        k: Number of folds.
        folds: Train only these folds (1-based), e.g. ``[1, 3]``; ``None`` = all.
    """

    k: int = 3
    folds: list[int] | None = field(default=None)

    def split(self, patients: pd.DataFrame, seed: int) -> list[Fold]:
        """Split a :func:`patient_table` into folds."""
        if self.k < 2:
            raise ValueError(f"validation.k must be at least 2, got {self.k}")
        if len(patients) < self.k:
            raise ValueError(f"Cannot make {self.k} folds from {len(patients)} patients")
        rng = np.random.default_rng(seed)
        chunks: list[list[str]] = [[] for _ in range(self.k)]
        # Rotate the starting fold per stratum so that small strata do not all pile into fold 1.
        offset = 0
        for _, group in sorted(patients.groupby("stratum"), key=lambda g: str(g[0])):
            ids = group["patient"].to_numpy()
            ids = ids[rng.permutation(len(ids))]
            for j, part in enumerate(np.array_split(ids, self.k)):
                chunks[(j + offset) % self.k].extend(part.tolist())
            offset += len(ids) % self.k
        all_patients = patients["patient"].tolist()
        result = []
        for i, val in enumerate(chunks, start=1):
            if self.folds and i not in self.folds:
                continue
            val_set = set(val)
            train = [p for p in all_patients if p not in val_set]
            result.append(Fold(f"fold{i}", train_patients=train, val_patients=sorted(val)))
        return result
