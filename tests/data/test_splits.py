"""Patient-level k-fold: no leaks, every patient validated once, stratified, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.data.splits import KFold, patient_table


def annotations(n_patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1])
        for s in range(rng.integers(1, 4)):
            rows.append({"patient": f"p{p}", "slide": f"p{p}_s{s}", "label": label})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_properties(seed: int, k: int) -> None:
    table = annotations(40, seed)
    patients = patient_table(table, ["label"])
    folds = KFold(k=k).split(patients, seed=seed)
    assert len(folds) == k
    validated = [p for f in folds for p in f.val_patients]
    assert sorted(validated) == sorted(patients.patient)  # each patient validated exactly once
    for fold in folds:
        assert not set(fold.train_patients) & set(fold.val_patients)
        assert set(fold.train_patients) | set(fold.val_patients) == set(patients.patient)
    labels = dict(zip(patients.patient, patients.stratum))
    for label in patients.stratum.unique():
        counts = [sum(labels[p] == label for p in f.val_patients) for f in folds]
        assert max(counts) - min(counts) <= 1, (label, counts)
    sizes = [len(f.val_patients) for f in folds]
    assert max(sizes) - min(sizes) <= len(patients.stratum.unique())


def test_kfold_seeded() -> None:
    patients = patient_table(annotations(30, 0), ["label"])
    first = [f.val_patients for f in KFold(k=3).split(patients, seed=1)]
    again = [f.val_patients for f in KFold(k=3).split(patients, seed=1)]
    other = [f.val_patients for f in KFold(k=3).split(patients, seed=2)]
    assert first == again
    assert first != other


def test_kfold_subset_of_folds() -> None:
    patients = patient_table(annotations(30, 0), ["label"])
    folds = KFold(k=3, folds=[1, 3]).split(patients, seed=0)
    assert [f.name for f in folds] == ["fold1", "fold3"]
