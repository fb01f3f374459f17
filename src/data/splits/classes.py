"""Classes too small for the folds: a class that a trained fold cannot both train and validate on.

A fold scores a class only when it validates on patients of that class, and its model predicts a class only
when it was trained on some. So with k-fold style strategies (every patient validated once: ``k_fold``,
``k_fold_site``, ``k_fold_manual``, a forced splits file) a class needs at least as many patients as there are
folds, and with hold-outs (``fixed``, ``bootstrap``, ``external``) at least two, one on each side. With fewer,
the fold mean mixes folds that cannot score the class with folds that score a class their model never saw:
fifty one-patient classes are each validated only where they were not trained on, and the printed AUROC
means nothing. The rule is checked on the folds themselves, so it also catches a class whose patients all
come from sites of one fold.

``validation.small_classes`` says what happens: ``warn`` (default) logs it, ``error`` stops the run; either
way before any tile is extracted, naming the outcome, the classes, their patient counts and the folds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from src.data.annotations import AnnotationError
from src.data.splits.folds import Fold, patient_values

log = logging.getLogger(__name__)

#: ``validation.small_classes``: what to do with classes too small for the folds.
SMALL_CLASSES = ("warn", "error")
SHOWN = 10  # classes named in a message; the others are counted


@dataclass
class ClassGap:
    """A class that some trained fold cannot both train and validate on.

    Attributes:
        label: The class.
        patients: Its patients in the planned folds.
        unseen: Folds that validate on the class without a training patient of it.
        unscored: Folds without a validation patient of the class.
    """

    label: str
    patients: int
    unseen: list[str]
    unscored: list[str]

    def describe(self) -> str:
        """``'rare': 1 patient (validated but never trained on in fold3; not validated in fold1, fold2)``."""
        parts = []
        if self.unseen:
            parts.append(f"validated but never trained on in {', '.join(self.unseen)}")
        if self.unscored:
            parts.append(f"not validated in {', '.join(self.unscored)}")
        return f"'{self.label}': {self.patients} patient{'s' if self.patients != 1 else ''} ({'; '.join(parts)})"


def small_classes_policy(value: object) -> str:
    """``validation.small_classes`` as a word of :data:`SMALL_CLASSES`.

    Raises:
        ValueError: any other value (naming the key and the allowed values).
    """
    policy = str(getattr(value, "value", value))
    if policy not in SMALL_CLASSES:
        raise ValueError(f"validation.small_classes={value!r}; choose one of {list(SMALL_CLASSES)}")
    return policy


def validates_each_patient_once(folds: Sequence[Fold]) -> bool:
    """Whether the folds are k-fold style: two or more, and every patient validated in exactly one."""
    validated = [p for fold in folds for p in fold.val_patients]
    everyone = {p for fold in folds for p in fold.train_patients + fold.val_patients}
    return len(folds) > 1 and len(validated) == len(set(validated)) == len(everyone)


def needed_patients(folds: Sequence[Fold]) -> int:
    """Patients a class needs: the number of folds when each patient is validated once (k-fold), else 2."""
    return len(folds) if validates_each_patient_once(folds) else 2


def class_gaps(folds: Sequence[Fold], labels: pd.Series) -> list[ClassGap]:
    """The classes of ``labels`` (patient → class) that some fold with validation patients cannot train and score.

    Args:
        folds: The folds trained (folds without validation patients, as ``validation=none``, are skipped).
        labels: Each patient's class.
    """
    labels = labels.astype(str)
    patients = {p for fold in folds for p in fold.train_patients + fold.val_patients}
    counts = labels[labels.index.isin(patients)].value_counts()
    gaps = []
    for label in sorted(counts.index):
        members = set(labels.index[labels == label])
        unseen, unscored = [], []
        for fold in folds:
            if not fold.val_patients:
                continue
            validated = members.intersection(fold.val_patients)
            if not validated:
                unscored.append(fold.name)
            elif not members.intersection(fold.train_patients):
                unseen.append(fold.name)
        if unseen or unscored:
            gaps.append(ClassGap(label, int(counts[label]), unseen, unscored))
    return gaps


def check_class_sizes(
    folds: Sequence[Fold],
    trained: Sequence[Fold],
    annotations: pd.DataFrame,
    outcomes: Sequence[str],
    policy: str = "warn",
    strategy: str = "",
) -> dict[str, list[ClassGap]]:
    """Warn about (or refuse) classes that a trained fold cannot both train and validate on.

    Args:
        folds: Every fold of the plan (they tell k-fold style from hold-out).
        trained: The folds this run trains.
        annotations: The run's slides (``patient`` and the outcome columns).
        outcomes: Categorical outcome columns.
        policy: ``validation.small_classes``: ``warn`` or ``error``.
        strategy: The strategy's name (``validation.name``), for the message.

    Returns:
        Outcome → its classes that are too small (empty when every class fits).

    Raises:
        AnnotationError: with ``policy="error"``, naming the outcome, the classes with their patient counts,
            the folds and how to fix it.
    """
    policy = small_classes_policy(policy)
    found = {}
    for outcome in outcomes:
        gaps = class_gaps(trained, patient_values(annotations, outcome))
        if gaps:
            found[outcome] = gaps
    if not found:
        return found
    message = "; ".join(_describe(outcome, gaps, folds, strategy) for outcome, gaps in found.items())
    if policy == "error":
        raise AnnotationError(f"{message} (validation.small_classes=error; =warn goes on with this warning)")
    log.warning("%s (validation.small_classes=error stops the run instead)", message)
    return found


def _describe(outcome: str, gaps: list[ClassGap], folds: Sequence[Fold], strategy: str) -> str:
    needed = needed_patients(folds)
    k_fold = validates_each_patient_once(folds)
    design = f"the {len(folds)} fold(s) of {strategy or 'this validation'}"
    shown = ", ".join(gap.describe() for gap in gaps[:SHOWN])
    more = f" and {len(gaps) - SHOWN} more" if len(gaps) > SHOWN else ""
    fewer = "use fewer folds" if k_fold else "validate on more patients (e.g. a larger validation.val_fraction)"
    return (
        f"Outcome '{outcome}': {len(gaps)} class(es) too small for {design} (a class needs at least {needed} "
        f"patients, and patients on both sides of every fold): {shown}{more}. A fold that validates a class it was "
        "never trained on scores predictions its model cannot make, and one that validates no patient of a class "
        f"cannot score it: the fold mean misleads. Merge or leave out these classes (e.g. dataset.filters), {fewer}, "
        "or add patients"
    )
