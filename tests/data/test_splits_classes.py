"""Classes too small for the folds (issue 20 item 10): found on the folds of every strategy, named with their
patient counts, and refused with ``validation.small_classes=error``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from src.data.annotations import AnnotationError
from src.data.splits import (
    Bootstrap,
    Fixed,
    Fold,
    KFold,
    NoValidation,
    check_class_sizes,
    small_classes_policy,
)
from src.data.splits.classes import class_gaps, needed_patients
from tests.conf_options import conf_splitter, options


def cohort(counts: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """One slide per patient; ``counts`` patients per class, sites and a holdout flag drawn at random."""
    rng = np.random.default_rng(seed)
    labels = [label for label, n in counts.items() for _ in range(n)]
    patients = [f"pt{i:03d}" for i in range(len(labels))]
    return pd.DataFrame(
        {
            "patient": patients,
            "slide": [f"{p}_0" for p in patients],
            "y": labels,
            "site": [f"site{i % 4}" for i in range(len(labels))],
            "dataset": np.where(rng.random(len(labels)) < 0.3, "holdout", "train"),
        }
    )


def brute_force(folds: list[Fold], table: pd.DataFrame) -> dict[str, tuple[int, list[str], list[str]]]:
    """Class → (patients, folds validating it without training on it, folds not validating it), for gaps only."""
    out = {}
    label = dict(zip(table.patient, table.y, strict=True))
    for cls in sorted(set(table.y)):
        unseen = [
            f.name
            for f in folds
            if f.val_patients
            and any(label[p] == cls for p in f.val_patients)
            and not any(label[p] == cls for p in f.train_patients)
        ]
        unscored = [f.name for f in folds if f.val_patients and not any(label[p] == cls for p in f.val_patients)]
        if unseen or unscored:
            out[cls] = (int((table.y == cls).sum()), unseen, unscored)
    return out


# every conf/validation option (tests/conf_options.py) with the settings of this cohort, and k_fold with k=5 too
COHORT_SETTINGS = {
    "k": 3,
    "val_fraction": 0.3,
    "column": "site",
    "filters": {"dataset": ["holdout"]},
    "train_filters": {"dataset": ["train"]},
}
SPLITTERS = {
    **{name: COHORT_SETTINGS for name in options("validation")},
    "k_fold-k5": {**COHORT_SETTINGS, "k": 5},
}


@pytest.mark.parametrize("name", SPLITTERS)
def test_the_gaps_of_every_strategy_are_the_brute_force_ones(name: str) -> None:
    splitter = conf_splitter(name.split("-")[0], **SPLITTERS[name])
    table = cohort({"common": 20, "other": 12, "rare": 1, "few": 2})
    folds = splitter.split(table, ["y"], seed=3)
    gaps = {g.label: (g.patients, g.unseen, g.unscored) for g in class_gaps(folds, table.set_index("patient").y)}
    assert gaps == brute_force(folds, table)
    if not isinstance(splitter, NoValidation):
        assert "rare" in gaps  # one patient is never both trained and validated on
    else:
        assert gaps == {}  # nothing is validated


def test_a_class_with_fewer_patients_than_folds_is_named_with_its_count(caplog) -> None:
    table = cohort({"common": 20, "other": 12, "rare": 1, "few": 2})
    folds = KFold(k=3).split(table, ["y"], seed=0)
    with caplog.at_level(logging.WARNING):
        found = check_class_sizes(folds, folds, table, ["y"], "warn", "k_fold")
    assert [g.label for g in found["y"]] == ["few", "rare"]  # 'common' and 'other' have >= 3 patients
    text = caplog.text
    assert "Outcome 'y': 2 class(es) too small for the 3 fold(s) of k_fold" in text
    assert "at least 3 patients" in text and "'rare': 1 patient (" in text and "'few': 2 patients (" in text
    assert "validated but never trained on in" in text and "validation.small_classes=error" in text
    with pytest.raises(AnnotationError, match=r"Outcome 'y': 2 class\(es\).*'rare': 1 patient.*small_classes=error"):
        check_class_sizes(folds, folds, table, ["y"], "error", "k_fold")


def test_classes_with_enough_patients_pass_quietly(caplog) -> None:
    table = cohort({"a": 6, "b": 3})
    folds = KFold(k=3).split(table, ["y"], seed=0)
    with caplog.at_level(logging.WARNING):
        assert check_class_sizes(folds, folds, table, ["y"], "error", "k_fold") == {}
    assert not caplog.records


def test_only_the_trained_folds_count_and_many_classes_are_summarised() -> None:
    table = cohort({"big": 30, **{f"c{i:02d}": 1 for i in range(50)}})  # the 50 one-patient classes
    folds = KFold(k=5).split(table, ["y"], seed=0)
    with pytest.raises(AnnotationError) as error:
        check_class_sizes(folds, folds[:2], table, ["y"], "error", "k_fold")
    message = str(error.value)
    assert "50 class(es) too small for the 5 fold(s)" in message and "and 40 more" in message
    assert "fold3" not in message  # fold3..5 are not trained by this run


def test_the_needed_patients_follow_the_design() -> None:
    table = cohort({"a": 10, "b": 10})
    assert needed_patients(KFold(k=4).split(table, ["y"], 0)) == 4
    assert needed_patients(Bootstrap(k=3).split(table, ["y"], 0)) == 2
    assert needed_patients(Fixed().split(table, ["y"], 0)) == 2
    assert needed_patients(Bootstrap(k=2).split(table, ["y"], 0)) == 2  # two hold-outs are not two folds


def test_the_advice_fits_the_design() -> None:
    table = cohort({"common": 20, "rare": 1})
    for splitter, advice in ((KFold(k=3), "use fewer folds"), (Bootstrap(k=2), "a larger validation.val_fraction")):
        folds = splitter.split(table, ["y"], seed=0)
        with pytest.raises(AnnotationError, match=advice):
            check_class_sizes(folds, folds, table, ["y"], "error")


def test_the_policy_is_warn_or_error() -> None:
    assert small_classes_policy("warn") == "warn" and small_classes_policy("error") == "error"
    with pytest.raises(ValueError, match=r"validation.small_classes='drop'; choose one of \['warn', 'error'\]"):
        small_classes_policy("drop")
