"""Event-aware batches (EventBatchSampler): distinct patients per batch, events guaranteed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from src.samplers.events import EventBatchSampler

# 40 patients, 10% with an event; patient i has slide 2i (and slide 2i+1 for even i); unequal tile counts.
N_PATIENTS = 40
EVENT_PATIENTS = {3, 17, 29, 36}
SLIDE_PATIENTS = [f"P{i // 2}" for i in range(2 * N_PATIENTS) if i % 2 == 0 or (i // 2) % 2 == 0]
SLIDE_EVENTS = [float(int(p[1:]) in EVENT_PATIENTS) for p in SLIDE_PATIENTS]
TILES = np.repeat(np.arange(len(SLIDE_PATIENTS)), np.random.default_rng(0).integers(1, 60, len(SLIDE_PATIENTS)))


def batches(sampler: EventBatchSampler, batch_size: int) -> list[np.ndarray]:
    order = np.fromiter(iter(sampler), dtype=np.int64)
    assert len(order) == len(sampler) and len(order) % batch_size == 0
    return list(order.reshape(-1, batch_size))


def test_every_batch_has_min_events_and_distinct_patients() -> None:
    sampler = EventBatchSampler(TILES, SLIDE_PATIENTS, SLIDE_EVENTS, batch_size=16, min_events=3, seed=0)
    patients, events = np.asarray(SLIDE_PATIENTS), np.asarray(SLIDE_EVENTS)
    for batch in batches(sampler, 16):
        slides = TILES[batch]
        assert len(set(patients[slides])) == 16  # one tile per patient: as many patients as the batch allows
        assert len(set(patients[slides][events[slides] == 1])) >= 3
    # unconstrained, 16 draws out of 40 patients with 4 events would miss events in ~13% of batches
    assert len(sampler) == (len(TILES) // 16) * 16


def test_patients_are_balanced_when_batch_exceeds_cohort() -> None:
    sampler = EventBatchSampler(TILES, SLIDE_PATIENTS, SLIDE_EVENTS, batch_size=100, min_events=2, seed=1)
    for batch in batches(sampler, 100):
        counts = pd.Series(np.asarray(SLIDE_PATIENTS)[TILES[batch]]).value_counts()
        assert len(counts) == N_PATIENTS and set(counts) <= {2, 3}  # 100 slots over 40 patients, evenly


def test_slides_without_tiles_are_never_drawn_and_epochs_differ() -> None:
    tiles = TILES[TILES != 0]  # slide 0 (patient P0's first slide) has no tiles
    sampler = EventBatchSampler(tiles, SLIDE_PATIENTS, SLIDE_EVENTS, batch_size=8, min_events=1, seed=2)
    first, second = np.fromiter(iter(sampler), int), np.fromiter(iter(sampler), int)
    assert 0 not in set(tiles[first]) and not np.array_equal(first, second)
    assert set(first) <= set(range(len(tiles)))
