"""Event-aware training batches for time-to-event (Cox) outcomes.

Why batches need care: the Cox partial likelihood of a batch only compares samples *within* the batch,
and a pair is informative only when the earlier of its two times is an observed event and the two
samples have different times. With tile-level training every tile inherits its slide's (time, event),
so tiles of one patient never form an informative pair with each other. What makes a useful batch is
therefore **many patients, several of them with an event** — not many tiles per patient.

:class:`EventBatchSampler` (``training_balance=auto`` or ``event`` for a cox outcome) builds every batch
from as many distinct patients as the batch allows (``min(batch_size, n_patients)``), drawn uniformly,
and forces at least ``min_events`` of them (``loss.min_events_per_batch``) to be patients with an event.
Tile slots are split evenly between the chosen patients (so patients are balanced, as Slideflow's
``patient`` balancing), a slide is drawn uniformly among the patient's slides and a tile uniformly among
the slide's tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from src.infra.distributed import rank as own_rank
from src.infra.distributed import world_size
from src.samplers.epochs import EpochSeeded


class EventBatchSampler(EpochSeeded, Sampler[int]):
    """Tile indices in blocks of ``batch_size``; each block is one Cox-ready training batch.

    Each block holds ``min(batch_size, n_patients)`` distinct patients, at least
    ``min(min_events, n_event_patients, n_patients_in_block)`` of them with an observed event, and
    splits its tile slots evenly between them. Use with ``DataLoader(batch_size=batch_size)`` and no
    shuffling; the length is a whole number of blocks.

    Under DDP every rank draws the same stream of ``ceil(num_batches / ranks) × ranks`` blocks from
    ``(seed, epoch)`` and keeps every ``ranks``-th block from its own rank on: each rank's every batch is a
    whole block, so the guarantees above hold for every batch on every rank, the ranks never share a block,
    and they have as many batches each (no rank waits for another).

    Args:
        slide_idx: (n_tiles,) slide of each tile (for slide-level datasets, ``arange(n_slides)``).
        slide_patients: Patient of each slide.
        slide_events: Event flag (0/1) of each slide.
        batch_size: Tiles per batch.
        min_events: Patients with an event guaranteed in every batch.
        num_batches: Batches per epoch; default ``max(1, n_tiles // batch_size)`` (one pass's worth).
        seed: Random seed; epoch ``e`` is drawn from a stream seeded with ``(seed, e)`` (see
            ``src.samplers.epochs``), so a resumed fit draws what an uninterrupted one would.
        num_replicas: Ranks that train together (default: the running ones, ``src.infra.distributed``).
        rank: This process's rank (default: its own).
    """

    def __init__(
        self,
        slide_idx: np.ndarray,
        slide_patients: Sequence[str],
        slide_events: Sequence[float] | np.ndarray,
        batch_size: int,
        min_events: int = 4,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        slide_idx = np.asarray(slide_idx, dtype=np.int64)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if min_events < 0:
            raise ValueError(f"min_events_per_batch must be >= 0, got {min_events}")
        n_slides = len(slide_patients)
        tiles_per_slide = np.bincount(slide_idx, minlength=n_slides)
        self.tile_order = np.argsort(slide_idx, kind="stable")  # tiles grouped by slide
        self.slide_start = np.concatenate([[0], np.cumsum(tiles_per_slide)[:-1]])
        self.tiles_per_slide = tiles_per_slide
        patients = np.asarray(slide_patients, dtype=object)
        events = np.asarray(slide_events, dtype=float)
        names = sorted({p for p, n in zip(patients, tiles_per_slide, strict=True) if n > 0})
        if not names:
            raise ValueError("EventBatchSampler needs at least one slide with tiles")
        self.patient_slides = [np.flatnonzero((patients == p) & (tiles_per_slide > 0)) for p in names]
        patient_event = np.array([events[s].max() == 1 for s in self.patient_slides])
        self.event_patients = np.flatnonzero(patient_event)
        self.n_patients = len(names)
        self.batch_size = int(batch_size)
        self.min_events = int(min_events)
        self.num_replicas = int(num_replicas or world_size())
        self.rank = own_rank() if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        total = int(num_batches) if num_batches else max(1, len(slide_idx) // self.batch_size)
        self.num_batches = math.ceil(total / self.num_replicas)  # this rank's batches per epoch
        self.seed = int(seed)
        self.epoch = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def batch_patients(self) -> np.ndarray:
        """Draw the distinct patients (indices) of one batch."""
        rng = self.rng
        n_chosen = min(self.batch_size, self.n_patients)
        k = min(self.min_events, len(self.event_patients), n_chosen)
        forced = rng.choice(self.event_patients, k, replace=False) if k else np.zeros(0, np.int64)
        others = np.setdiff1d(np.arange(self.n_patients), forced)
        rest = rng.choice(others, n_chosen - k, replace=False)
        return np.concatenate([forced, rest])

    def batch(self) -> np.ndarray:
        """Draw the tile indices of one batch."""
        rng = self.rng
        chosen = self.batch_patients()
        slots = np.full(len(chosen), self.batch_size // len(chosen))
        slots[rng.choice(len(chosen), self.batch_size % len(chosen), replace=False)] += 1
        tiles = []
        for patient, count in zip(chosen, slots, strict=True):
            slides = self.patient_slides[patient]
            slide = slides[rng.integers(len(slides), size=count)]
            offset = (rng.random(count) * self.tiles_per_slide[slide]).astype(np.int64)
            tiles.append(self.tile_order[self.slide_start[slide] + offset])
        order = np.concatenate(tiles)
        return order[rng.permutation(len(order))]

    def __iter__(self) -> Iterator[int]:
        self.rng = np.random.default_rng(self.next_epoch_seed())
        for block in range(self.num_batches * self.num_replicas):
            tiles = self.batch()  # every rank draws every block, so the stream is the same on all
            if block % self.num_replicas == self.rank:
                yield from tiles.tolist()
