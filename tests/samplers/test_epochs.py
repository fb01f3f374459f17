"""Samplers draw epoch e from (seed, e): a sampler set to epoch e draws what one that ran epochs 0..e-1 draws."""

from __future__ import annotations

import numpy as np
import pytest

from src.samplers.balance import weighted_sampler
from src.samplers.epochs import seed_for
from src.samplers.events import EventBatchSampler

SLIDES = np.repeat(np.arange(6), [5, 9, 3, 7, 4, 8])
PATIENTS = ["P0", "P0", "P1", "P2", "P3", "P4"]
EVENTS = [1, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(
    "make",
    [
        lambda: weighted_sampler(np.linspace(1, 2, len(SLIDES)) / np.linspace(1, 2, len(SLIDES)).sum(), seed=7),
        lambda: EventBatchSampler(SLIDES, PATIENTS, EVENTS, batch_size=8, min_events=2, seed=7),
    ],
    ids=["weighted", "event"],
)
def test_epoch_e_is_the_same_with_or_without_the_epochs_before(make) -> None:
    running = make()
    epochs = [list(running) for _ in range(3)]  # passes advance the epoch by themselves
    assert epochs[0] != epochs[1] != epochs[2]
    resumed = make()
    resumed.set_epoch(2)  # as Lightning does before a resumed epoch
    assert list(resumed) == epochs[2]
    again = make()
    again.set_epoch(1)
    assert list(again) == epochs[1]


def test_epoch_seeds_are_distinct_and_in_range() -> None:
    seeds = {seed_for(s, e) for s in range(5) for e in range(50)}
    assert len(seeds) == 250 and all(0 <= s < 2**63 for s in seeds)
