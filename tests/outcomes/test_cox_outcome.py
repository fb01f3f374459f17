"""The cox outcome kind: event-aware sampler choice, events per training fold, survival config checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from torch.utils.data import WeightedRandomSampler

from src.config.validate import check_label_columns
from src.data.annotations import AnnotationError
from src.data.dataset import Dataset
from src.data.splits import Fold
from src.errors import ConfigError
from src.outcomes.cox import CoxOutcome
from src.project import check_fold_targets
from src.samplers.events import EventBatchSampler

# 40 patients, 10% with an event; patient i has slide 2i (and slide 2i+1 for even i); unequal tile counts.
N_PATIENTS = 40
EVENT_PATIENTS = {3, 17, 29, 36}
SLIDE_PATIENTS = [f"P{i // 2}" for i in range(2 * N_PATIENTS) if i % 2 == 0 or (i // 2) % 2 == 0]
SLIDE_EVENTS = [float(int(p[1:]) in EVENT_PATIENTS) for p in SLIDE_PATIENTS]
TILES = np.repeat(np.arange(len(SLIDE_PATIENTS)), np.random.default_rng(0).integers(1, 60, len(SLIDE_PATIENTS)))


COX = CoxOutcome("os_time", event="os_event")


def test_survival_sampler_choices() -> None:
    part = np.stack([np.ones(len(SLIDE_EVENTS)), SLIDE_EVENTS], axis=1)
    args = (TILES, SLIDE_PATIENTS, part, 16, 0, {"min_events_per_batch": 2})
    assert isinstance(COX.sampler("auto", *args), EventBatchSampler)
    assert isinstance(COX.sampler("event", *args), EventBatchSampler)
    assert isinstance(COX.sampler("patient", *args), WeightedRandomSampler)
    assert COX.sampler("none", *args) is None
    with pytest.raises(ValueError, match="does not fit a cox outcome"):
        COX.sampler("category", *args)


def test_training_set_without_events_names_the_fold() -> None:
    targets = np.array([[5.0, 0.0], [7.0, 0.0]])
    with pytest.raises(AnnotationError, match="training set of fold2 has no observed event in 'os_event'"):
        COX.check_training(targets, "fold2")
    COX.check_training(np.array([[5.0, 1.0], [7.0, 0.0]]), "fold2")


def test_fold_check_runs_before_training() -> None:
    table = pd.DataFrame(
        {
            "patient": ["a", "b", "c", "d"],
            "slide": ["a1", "b1", "c1", "d1"],
            "os_time": [3.0, 4.0, 5.0, 6.0],
            "os_event": [1, 0, 0, 1],
        }
    )
    dataset = Dataset(table)
    labels, _ = dataset.labels("os_time", "cox", "os_event")
    good = Fold("fold1", train_patients=["a", "b"], val_patients=["c", "d"])
    bad = Fold("fold3", train_patients=["b", "c"], val_patients=["a", "d"])
    check_fold_targets([good], dataset, labels)
    with pytest.raises(AnnotationError, match="fold3"):
        check_fold_targets([good, bad], dataset, labels)


def test_all_censored_annotations_are_rejected() -> None:
    table = pd.DataFrame({"patient": ["a", "b"], "slide": ["a1", "b1"], "os_time": [3.0, 4.0], "os_event": [0, 0]})
    with pytest.raises(AnnotationError, match="'os_event' has no observed event"):
        Dataset(table).labels("os_time", "cox", "os_event")


def test_survival_config_checks() -> None:
    check_label_columns({"os_time": "cox"}, "os_event", ["age"])
    with pytest.raises(ConfigError, match="event goes in event_header"):
        check_label_columns({"os_time": "cox"}, "os_event", ["os_event", "age"])
    with pytest.raises(ConfigError, match="use loss=cox"):
        check_label_columns({"tumor_type": "categorical"}, "os_event", [])
    with pytest.raises(ConfigError, match="training_balance='category' does not fit a cox outcome"):
        CoxOutcome.resolve_balance("category")
