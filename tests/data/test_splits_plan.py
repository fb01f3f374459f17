"""The validation plan: project splits cache (re-used when and only when everything matches), forced splits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from src.data.annotations import AnnotationError
from src.data.splits import Bootstrap, Fixed, KFold, KFoldManual, KFoldSite, NoValidation, plan_splits
from src.errors import UnsafeFileError
from tests.data.test_splits import make_table


class Counting:
    """Wraps a splitter and counts how often it actually splits."""

    def __init__(self, splitter) -> None:
        self.splitter = splitter
        self.calls = 0
        self.cacheable = splitter.cacheable
        self.key_columns = splitter.key_columns

    def params(self) -> dict:
        return self.splitter.params()

    def split(self, *args):
        self.calls += 1
        return self.splitter.split(*args)


def plan(splitter, table, tmp_path: Path, seed: int = 0, strata=("label",), **kwargs):
    return plan_splits(splitter, table, list(strata), seed, strategy="s", cache_dir=tmp_path / "splits", **kwargs)


def folds_of(result) -> list[tuple[list[str], list[str]]]:
    return [(f.train_patients, f.val_patients) for f in result.folds]


@pytest.mark.parametrize(
    "make", [lambda: Fixed(0.2), lambda: Bootstrap(3, 0.2), lambda: KFold(3), lambda: KFoldSite(3)]
)
def test_second_run_loads_the_cached_splits(make, tmp_path: Path) -> None:
    table, _ = make_table(0)
    splitter = Counting(make())
    first = plan(splitter, table, tmp_path)
    assert (first.source, splitter.calls) == ("computed", 1)
    assert first.path.exists() and first.path.parent == tmp_path / "splits"
    second = plan(splitter, table, tmp_path)
    assert (second.source, second.path, splitter.calls) == ("cache", first.path, 1)
    assert folds_of(second) == folds_of(first)
    # What is loaded is the file: an edited cache file is what the next run gets.
    data = json.loads(first.path.read_text())
    data["folds"][0]["val_patients"], data["folds"][0]["train_patients"] = (
        data["folds"][0]["train_patients"],
        data["folds"][0]["val_patients"],
    )
    first.path.write_text(json.dumps(data))
    assert plan(splitter, table, tmp_path).folds[0].val_patients == first.folds[0].train_patients


def test_changed_settings_do_not_reuse_the_cache(tmp_path: Path) -> None:
    table, _ = make_table(1)
    base = plan(Fixed(0.2), table, tmp_path)
    assert plan(Fixed(0.2), table, tmp_path).source == "cache"
    other_fraction = plan(Fixed(0.3), table, tmp_path)  # Slideflow ignored val_fraction here
    assert other_fraction.source == "computed"
    assert len(other_fraction.folds[0].val_patients) > len(base.folds[0].val_patients)
    assert plan(Fixed(0.2), table, tmp_path, seed=1).source == "computed"
    assert plan(Bootstrap(3, 0.2), table, tmp_path).source == "computed"  # strategy + k
    assert plan(Bootstrap(4, 0.2), table, tmp_path).source == "computed"
    assert plan(Fixed(0.2), table, tmp_path, strata=("grade",)).source == "computed"  # outcome
    flipped = table.copy()
    flipped.loc[flipped.patient == flipped.patient[0], "label"] = "z"  # one patient's label
    assert plan(Fixed(0.2), flipped, tmp_path).source == "computed"
    fewer = table[table.patient != table.patient[0]]  # the patient list
    assert plan(Fixed(0.2), fewer, tmp_path).source == "computed"
    moved = table.copy()
    moved.loc[moved.patient == moved.patient[0], "site"] = "site_new"  # a site, for k_fold_site
    assert plan(KFoldSite(3), table, tmp_path).source == "computed"
    assert plan(KFoldSite(3), table, tmp_path).source == "cache"
    assert plan(KFoldSite(3), moved, tmp_path).source == "computed"
    # and each of those is cached in its own file, so the original is still re-used
    assert plan(Fixed(0.2), table, tmp_path).folds == base.folds


def test_deterministic_strategies_are_not_cached(tmp_path: Path) -> None:
    table, _ = make_table(2)
    for splitter in (KFoldManual("batch"), NoValidation()):
        assert plan(splitter, table, tmp_path).source == "computed"
    assert not (tmp_path / "splits").exists()
    assert plan_splits(Fixed(0.2), table, ["label"], 0, strategy="fixed", cache_dir=None).path is None


def test_forced_splits_file(tmp_path: Path) -> None:
    table, _ = make_table(3)
    original = plan(KFold(3), table, tmp_path, seed=5)
    original.write(tmp_path / "splits.json", table)
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert (saved["strategy"], saved["seed"], saved["k"], saved["source"]) == ("s", 5, 3, "computed")
    for fold in saved["folds"]:
        slides = set(table[table.patient.isin(fold["val_patients"])].slide)
        assert set(fold["val_slides"]) == slides and not slides & set(fold["train_slides"])
    forced = plan(Fixed(0.2), table, tmp_path, seed=0, splits_file=tmp_path / "splits.json", folds=[2])
    assert (forced.source, forced.strategy) == ("file", "s")
    assert folds_of(forced) == folds_of(original)
    assert [f.name for f in forced.trained_folds()] == ["fold2"]
    # A patient the file names but the dataset no longer has: error naming the patient.
    gone = original.folds[0].val_patients[0]
    with pytest.raises(AnnotationError, match=gone):
        plan(KFold(3), table[table.patient != gone], tmp_path, splits_file=tmp_path / "splits.json")
    # A leaking file is refused.
    saved["folds"][0]["train_patients"].append(saved["folds"][0]["val_patients"][0])
    (tmp_path / "leak.json").write_text(json.dumps(saved))
    with pytest.raises(AnnotationError, match="both training and validation of fold1"):
        plan(KFold(3), table, tmp_path, splits_file=tmp_path / "leak.json")
    with pytest.raises(FileNotFoundError, match=r"validation\.splits"):
        plan(KFold(3), table, tmp_path, splits_file=tmp_path / "missing.json")


def test_folds_selection_keeps_every_fold_in_the_plan(tmp_path: Path) -> None:
    table, _ = make_table(4)
    result = plan(KFold(3), table, tmp_path, folds=[1, 3])
    assert [f.name for f in result.folds] == ["fold1", "fold2", "fold3"]
    assert [f.name for f in result.trained_folds()] == ["fold1", "fold3"]
    assert result.to_dict()["trained"] == ["fold1", "fold3"]
    with pytest.raises(ValueError, match=r"validation\.folds"):
        plan(KFold(3), table, tmp_path, folds=[4])


def test_a_cache_that_leaves_patients_out_is_checked_as_a_splits_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20 item 13: an edited cache without one patient in any fold is used, but not silently."""
    table, _ = make_table(4)
    first = plan(KFold(3), table, tmp_path)
    gone = first.folds[0].val_patients[0]
    data = json.loads(first.path.read_text())
    for fold in data["folds"]:
        fold["train_patients"] = [p for p in fold["train_patients"] if p != gone]
        fold["val_patients"] = [p for p in fold["val_patients"] if p != gone]
    first.path.write_text(json.dumps(data))
    data.pop("patients")  # the same folds, given as a validation.splits file
    (tmp_path / "given.json").write_text(json.dumps(data))
    for what, kwargs in [("the splits cache", {}), ("validation.splits=", {"splits_file": tmp_path / "given.json"})]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = plan(KFold(3), table, tmp_path, **kwargs)
        assert result.source == ("cache" if not kwargs else "file")
        assert result.dropped_patients == [gone]
        assert result.to_dict()["dropped_patients"] == [gone]
        (warning,) = [r.getMessage() for r in caplog.records]
        assert f"1 patient(s) are in no fold of {what}" in warning and repr(gone) in warning
    # and a cache naming a patient twice (in both sets of a fold) fails as a given file does
    data = json.loads(first.path.read_text())
    data["folds"][0]["train_patients"].append(data["folds"][0]["val_patients"][0])
    first.path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"the splits cache .*: Patients in both training and validation"):
        plan(KFold(3), table, tmp_path)


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../elsewhere", "fold1/x", ".."])
def test_fold_names_of_a_splits_file_or_cache_are_plain_names(tmp_path: Path, name: str) -> None:
    """Issue 20 item 3: a fold's name becomes its folder in the run folder."""
    table, _ = make_table(5)
    first = plan(KFold(3), table, tmp_path)
    data = json.loads(first.path.read_text())
    data["folds"][0]["name"] = name
    first.path.write_text(json.dumps(data))
    (tmp_path / "given.json").write_text(json.dumps(data))
    with pytest.raises(UnsafeFileError, match=r"folds\[0\]\.name=.* is not a plain name"):
        plan(KFold(3), table, tmp_path)  # the cache
    with pytest.raises(UnsafeFileError, match=r"given\.json: folds\[0\]\.name=.* is not a plain name"):
        plan(KFold(3), table, tmp_path, splits_file=tmp_path / "given.json")
    data["folds"][0]["name"] = data["folds"][1]["name"]
    (tmp_path / "given.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="names two folds 'fold2'"):
        plan(KFold(3), table, tmp_path, splits_file=tmp_path / "given.json")
