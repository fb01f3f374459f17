"""Every validation strategy on random annotation tables: patient-level, leak-proof, balanced, seeded.

The strategies are the options of conf/validation (tests/conf_options.py): a new one is tested with no test edited.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.data.annotations import AnnotationError
from src.data.splits import (
    Bootstrap,
    External,
    Fixed,
    Fold,
    KFold,
    KFoldManual,
    KFoldSite,
    SplitPlan,
    patient_table,
    select_folds,
)
from src.data.splits.holdout import holdout_size
from tests.conf_options import conf_splitter, options


def make_table(
    seed: int,
    n_patients: int = 30,
    n_sites: int = 4,
    outcome: str = "categorical",
    majority: float = 0.6,
    max_slides: int = 3,
) -> tuple[pd.DataFrame, list[str]]:
    """A random annotations table (one row per slide) and its categorical strata.

    Every site, manual fold value and dataset (train/holdout) is patient-level; the class mix is
    ``majority`` / rest, plus a rare third class for ``categorical``.
    """
    rng = np.random.default_rng(seed)
    sites = [f"site{i}" for i in range(n_sites)]
    rows = []
    for p in range(n_patients):
        site = sites[p] if p < n_sites else rng.choice(sites)
        label = rng.choice(["a", "b", "c"], p=[majority, (1 - majority) * 0.8, (1 - majority) * 0.2])
        grade = rng.choice(["low", "high"])
        fold = f"batch{p % 3}" if p < 3 else rng.choice(["batch0", "batch1", "batch2"])
        dataset = "holdout" if rng.random() < 0.25 else "train"
        time, event = float(rng.uniform(1, 60)), int(rng.random() < 0.7)
        for s in range(int(rng.integers(1, max_slides + 1))):
            rows.append(
                {
                    "patient": f"pt{p:03d}",
                    "slide": f"pt{p:03d}_{s}",
                    "site": site,
                    "label": label,
                    "grade": grade,
                    "batch": fold,
                    "dataset": dataset,
                    "score": float(rng.normal()),
                    "os_time": time,
                    "os_event": event,
                }
            )
    strata = {"categorical": ["label"], "two_categorical": ["label", "grade"], "linear": [], "cox": []}[outcome]
    return pd.DataFrame(rows), strata


@st.composite
def cohorts(draw):
    """Random cohorts: patients, slides per patient, sites, class imbalance, outcome type, k, seed."""
    n_sites = draw(st.integers(2, 7))
    table, strata = make_table(
        seed=draw(st.integers(0, 2**31)),
        n_patients=draw(st.integers(max(n_sites, 6), 70)),
        n_sites=n_sites,
        outcome=draw(st.sampled_from(["categorical", "two_categorical", "linear", "cox"])),
        majority=draw(st.floats(0.3, 0.95)),
        max_slides=draw(st.integers(1, 4)),
    )
    k = draw(st.integers(2, min(5, n_sites)))
    return table, strata, k, draw(st.integers(0, 10_000)), draw(st.sampled_from([0.1, 0.2, 0.33, 0.5]))


# what the random tables need beyond k and val_fraction: the manual folds' column, the external validation slides
TABLE_SETTINGS = {"column": "batch", "filters": {"dataset": ["holdout"]}, "train_filters": {"dataset": ["train"]}}


def strategies(k: int, val_fraction: float) -> dict:
    """Every conf/validation option's splitter, with the settings of these tables where its node has the key."""
    return {
        name: conf_splitter(name, k=k, val_fraction=val_fraction, **TABLE_SETTINGS) for name in options("validation")
    }


def patient_of(table: pd.DataFrame, column: str) -> dict[str, str]:
    return dict(zip(table.patient, table[column].astype(str)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cohorts())
def test_every_strategy_is_patient_level_and_leak_free(cohort) -> None:
    table, strata, k, seed, val_fraction = cohort
    everyone = set(table.patient)
    stratum = dict(zip(*patient_table(table, strata)[["patient", "stratum"]].T.to_numpy()))
    for name, splitter in strategies(k, val_fraction).items():
        if name == "external" and table.dataset.nunique() < 2:
            continue
        folds = splitter.split(table, strata, seed)
        # Slides follow their patient: no slide and no patient on both sides of any fold.
        plan = SplitPlan(name, seed, splitter.params(), strata, folds).to_dict(table)
        for fold, entry in zip(folds, plan["folds"]):
            assert not set(fold.train_patients) & set(fold.val_patients), (name, fold.name)
            assert not set(entry["train_slides"]) & set(entry["val_slides"]), (name, fold.name)
            slides = table[table.patient.isin(fold.val_patients)].slide
            assert sorted(entry["val_slides"]) == sorted(slides), (name, fold.name)
            if name != "external":
                assert set(fold.train_patients) | set(fold.val_patients) == everyone, (name, fold.name)
        validated = [p for f in folds for p in f.val_patients]
        if name.startswith("k_fold"):  # every patient validated exactly once
            assert sorted(validated) == sorted(everyone), name
        if name == "k_fold":
            assert len(folds) == k
            for label in set(stratum.values()):  # per class, fold sizes within one patient
                counts = [sum(stratum[p] == label for p in f.val_patients) for f in folds]
                assert max(counts) - min(counts) <= 1, (label, counts)
            sizes = [len(f.val_patients) for f in folds]
            assert max(sizes) - min(sizes) <= 1, sizes
        if name == "k_fold_site":  # a site is never split
            site = patient_of(table, "site")
            fold_sites = [{site[p] for p in f.val_patients} for f in folds]
            assert all(fold_sites), "empty fold"
            assert sum(len(s) for s in fold_sites) == len(set(site.values())), fold_sites
        if name == "k_fold_manual":
            batch = patient_of(table, "batch")
            assert [{batch[p] for p in f.val_patients} for f in folds] == [{"batch0"}, {"batch1"}, {"batch2"}]
        if name in ("bootstrap", "fixed"):
            assert len(folds) == (k if name == "bootstrap" else 1)
            n_val = holdout_size(len(everyone), val_fraction)
            for fold in folds:
                assert len(fold.val_patients) == n_val == len(set(fold.val_patients))
                for label in set(stratum.values()):  # each class within one patient of its share
                    members = sum(v == label for v in stratum.values())
                    count = sum(stratum[p] == label for p in fold.val_patients)
                    assert abs(count - n_val * members / len(everyone)) < 1, (label, count, members)
        if name == "none":
            assert [(sorted(f.train_patients), f.val_patients) for f in folds] == [(sorted(everyone), [])]
        if name == "external":
            dataset = patient_of(table, "dataset")
            assert {dataset[p] for p in folds[0].val_patients} == {"holdout"}
            assert {dataset[p] for p in folds[0].train_patients} == {"train"}


@pytest.mark.parametrize("name", ["k_fold", "bootstrap", "fixed"])
def test_same_seed_same_splits_other_seed_other_splits(name: str) -> None:
    table, strata = make_table(0, n_patients=40)
    splitter = strategies(3, 0.25)[name]

    def split(seed: int) -> list[tuple[list[str], list[str]]]:
        return [(f.train_patients, f.val_patients) for f in splitter.split(table, strata, seed)]

    for seed in (0, 1, 7):
        assert split(seed) == split(seed)
        assert split(seed) != split(seed + 100)


def test_k_fold_is_random_for_linear_and_cox_outcomes() -> None:
    table, _ = make_table(3, n_patients=31)
    folds = KFold(k=3).split(table, [], seed=0)
    assert sorted(len(f.val_patients) for f in folds) == [10, 10, 11]
    assert folds != KFold(k=3).split(table, [], seed=1)


def test_joined_labels_stratify_several_outcomes() -> None:
    table, strata = make_table(1, n_patients=48, outcome="two_categorical")
    patients = patient_table(table, strata)
    assert set(patients.stratum) <= {f"{a}-{g}" for a in "abc" for g in ("low", "high")}
    label = dict(zip(table.patient, table.label + "-" + table.grade))
    assert dict(zip(patients.patient, patients.stratum)) == label


def test_patient_with_conflicting_outcome_is_named() -> None:
    table, strata = make_table(2)
    first = table.index[table.patient == table.patient[table.patient.duplicated()].iloc[0]]
    table.loc[first[0], "label"], table.loc[first[1], "label"] = "a", "b"
    patient = table.loc[first[0], "patient"]
    for splitter in (KFold(3), Fixed(0.2), Bootstrap(3, 0.2), KFoldSite(3)):
        with pytest.raises(AnnotationError, match=patient):
            splitter.split(table, strata, 0)


def test_patient_at_two_sites_is_named() -> None:
    table, strata = make_table(4)
    patient = table.patient[table.patient.duplicated()].iloc[0]
    rows = table.index[table.patient == patient]
    table.loc[rows[0], "site"], table.loc[rows[1], "site"] = "site0", "site1"
    with pytest.raises(AnnotationError, match=rf"more than one site.*'{patient}'"):
        KFoldSite(k=3).split(table, strata, 0)


def test_site_column_is_configurable_and_checked() -> None:
    table, strata = make_table(5)
    renamed = table.rename(columns={"site": "hospital"})
    folds = KFoldSite(k=3, site_column="hospital").split(renamed, strata, 0)
    assert sorted(p for f in folds for p in f.val_patients) == sorted(set(table.patient))
    with pytest.raises(AnnotationError, match=r"'site' \(validation.site_column\)"):
        KFoldSite(k=3).split(renamed, strata, 0)
    with pytest.raises(AnnotationError, match="at least 5 sites"):
        KFoldSite(k=5).split(table, strata, 0)


def test_manual_column_is_checked() -> None:
    table, strata = make_table(6)
    with pytest.raises(AnnotationError, match="'cohort'"):
        KFoldManual(column="cohort").split(table, strata, 0)
    with pytest.raises(AnnotationError, match="single value"):
        KFoldManual(column="batch").split(table.assign(batch="one"), strata, 0)
    patient = table.patient[table.patient.duplicated()].iloc[0]
    rows = table.index[table.patient == patient]
    table.loc[rows[0], "batch"], table.loc[rows[1], "batch"] = "batch0", "batch1"
    with pytest.raises(AnnotationError, match=patient):
        KFoldManual(column="batch").split(table, strata, 0)


def test_external_patient_in_both_sets_is_named() -> None:
    table, strata = make_table(7)
    with pytest.raises(AnnotationError, match="both the training set"):
        External(filters={"dataset": ["holdout"]}).split(table, strata, 0)  # training = every slide
    patient = table.patient[table.patient.duplicated()].iloc[0]
    table.loc[table.index[table.patient == patient][0], "dataset"] = "holdout"
    table.loc[table.index[table.patient == patient][1], "dataset"] = "train"
    with pytest.raises(AnnotationError, match=patient):
        External(filters={"dataset": ["holdout"]}, train_filters={"dataset": ["train"]}).split(table, strata, 0)
    with pytest.raises(AnnotationError, match="selects no slide"):
        External(filters={"dataset": ["nowhere"]}).split(table, strata, 0)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: KFold(k=1), "validation.k"),
        (lambda: Bootstrap(k=3, val_fraction=1.0), "validation.val_fraction"),
        (lambda: Fixed(val_fraction=0), "validation.val_fraction"),
        (lambda: KFoldManual(column=None), "validation.column"),
        (lambda: External(filters=None), "validation.filters"),
    ],
)
def test_bad_settings_name_their_key(make, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        make()


def test_too_few_patients_for_k() -> None:
    table, strata = make_table(8, n_patients=4, n_sites=2)
    with pytest.raises(AnnotationError, match="Cannot make 5 folds from 4 patient"):
        KFold(k=5).split(table, strata, 0)


def test_select_folds() -> None:
    folds = [Fold(f"fold{i}", [], []) for i in (1, 2, 3)]
    assert [f.name for f in select_folds(folds, [3, 1])] == ["fold1", "fold3"]
    assert select_folds(folds, None) == folds
    with pytest.raises(ValueError, match=r"choose from \[1, 2, 3\]"):
        select_folds(folds, [4])
