"""Balancing of the tile stream: per-tile sampling weights for each Slideflow balancing strategy.

Which strategies an outcome accepts, and what ``auto`` means for it, is the outcome kind's business
(``src.outcomes``); this module only turns a strategy into weights and a sampler.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from src.infra.distributed import rank, world_size
from src.samplers.epochs import EpochSeeded


def tile_weights(
    strategy: str,
    slide_idx: np.ndarray,
    slide_patients: Sequence[str],
    slide_categories: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray | None:
    """Sampling weight of each tile so that the chosen unit is drawn equally often.

    Args:
        strategy: ``tile`` (every tile equally likely), ``slide`` (every slide equally likely),
            ``patient`` (every patient), ``category`` (every class of the first categorical outcome;
            slides equal within a class), or ``none`` (no sampler: a shuffled pass over all tiles).
        slide_idx: (n_tiles,) slide of each tile.
        slide_patients: Patient of each slide.
        slide_categories: Class index of each slide (``category`` only).

    Returns:
        (n_tiles,) weights summing to 1, or ``None`` for ``none``.
    """
    if strategy == "none":
        return None
    n_slides = len(slide_patients)
    tiles_per_slide = np.bincount(slide_idx, minlength=n_slides).astype(float)
    if strategy == "tile":
        slide_mass = tiles_per_slide.copy()
    elif strategy == "slide":
        slide_mass = (tiles_per_slide > 0).astype(float)
    elif strategy == "patient":
        slide_mass = _equal_groups(np.asarray(slide_patients), tiles_per_slide > 0)
    elif strategy == "category":
        if slide_categories is None:
            raise ValueError("Category balancing needs slide categories")
        slide_mass = _equal_groups(np.asarray(slide_categories), tiles_per_slide > 0)
    else:
        raise ValueError(f"Unknown balance strategy '{strategy}'")
    per_tile = np.divide(slide_mass, tiles_per_slide, out=np.zeros(n_slides), where=tiles_per_slide > 0)
    weights = per_tile[slide_idx]
    return weights / weights.sum()


def _equal_groups(groups: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per-slide mass giving every group (patient, category) the same total, shared by its slides with tiles."""
    mass = np.zeros(len(groups))
    for group in np.unique(groups[present]):
        members = present & (groups == group)
        mass[members] = 1.0 / members.sum()
    return mass


class EpochWeightedSampler(EpochSeeded, WeightedRandomSampler):
    """``WeightedRandomSampler`` whose draws of epoch ``e`` depend only on ``(seed, e)`` (resumable).

    Under DDP every rank draws the same stream of ``ceil(n / ranks) × ranks`` tiles and keeps every
    ``ranks``-th one from its own rank on: each rank's draws are still independent draws from the balance
    weights (so the balance holds exactly, on each rank and overall), the ranks together draw one
    process's epoch (rounded up to a multiple of the ranks), and every rank has as many batches.

    Args:
        weights: (n_tiles,) sampling weights.
        seed: Random seed.
        num_replicas: Ranks that train together (default: the running ones, ``src.infra.distributed``).
        rank: This process's rank (default: its own).
    """

    def __init__(
        self, weights: np.ndarray, seed: int, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        self.num_replicas = int(num_replicas or world_size())
        self.rank = _rank(rank, self.num_replicas)
        per_rank = math.ceil(len(weights) / self.num_replicas)
        # torch annotates weights as Sequence[float]; it reads any array (torch.as_tensor)
        super().__init__(weights, num_samples=per_rank, replacement=True, generator=torch.Generator())  # type: ignore[arg-type]
        self.seed = int(seed)
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(self.next_epoch_seed())
        draws = torch.multinomial(self.weights, self.num_samples * self.num_replicas, True, generator=self.generator)
        yield from draws[self.rank :: self.num_replicas].tolist()


def _rank(value: int | None, num_replicas: int) -> int:
    value = rank() if value is None else int(value)
    if not 0 <= value < num_replicas:
        raise ValueError(f"rank {value} is not in [0, {num_replicas})")
    return value


def weighted_sampler(weights: np.ndarray | None, seed: int) -> EpochWeightedSampler | None:
    """A seeded sampler drawing ``len(weights)`` tiles with replacement (``None`` when ``weights`` is)."""
    if weights is None:
        return None
    return EpochWeightedSampler(weights, seed)
