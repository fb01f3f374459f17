"""Each DDP rank's share of the tiles, for the loaders that have no balance sampler of their own.

The data modules shard by rank themselves (the Trainer runs with ``use_distributed_sampler=False``), so
that every guarantee is stated where the indices are drawn:

- training with a balance or event sampler: the sampler shards itself (``src.samplers.balance``,
  ``src.samplers.events``);
- training without one (``training_balance=none``): :class:`ShuffledShard`, one pass over every tile per
  epoch across the ranks, the same number for each rank;
- validation: :class:`EvalShard`, every tile on exactly one rank, without the padding of
  ``DistributedSampler`` (the ranks may differ by one tile; the module gathers them back by index).

With one process nothing changes: the loaders shuffle or read in order as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from src.infra.distributed import rank, world_size
from src.samplers.epochs import EpochSeeded


class ShuffledShard(EpochSeeded, Sampler[int]):
    """This rank's part of a shuffled pass over ``n`` items, drawn from ``(seed, epoch)``.

    Every rank permutes the same way and keeps every ``num_replicas``-th item from its rank on; the last
    items are repeated from the start so that every rank has ``ceil(n / num_replicas)`` (as
    ``DistributedSampler``).

    Args:
        n: Number of items.
        seed: Random seed.
        num_replicas: Number of ranks.
        rank: This rank.
    """

    def __init__(self, n: int, seed: int, num_replicas: int, rank: int) -> None:
        self.n, self.seed, self.num_replicas, self.rank = int(n), int(seed), int(num_replicas), int(rank)
        self.epoch = 0
        self.per_rank = math.ceil(self.n / self.num_replicas)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng(self.next_epoch_seed()).permutation(self.n)
        order = np.resize(order, self.per_rank * self.num_replicas)  # pads by repeating from the start
        yield from order[self.rank :: self.num_replicas].tolist()


class EvalShard(Sampler[int]):
    """Items ``rank, rank + num_replicas, ...`` of ``n``: every item on exactly one rank, in order.

    A rank that would get none (fewer items than ranks) reads item ``rank % n`` again, so that it still
    takes part in the gathering; the module drops the repeat by its index.

    Args:
        n: Number of items.
        num_replicas: Number of ranks.
        rank: This rank.
    """

    def __init__(self, n: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, n, num_replicas)) or ([rank % n] if n else [])

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def training_sampler(sampler: Sampler[int] | None, n: int, seed: int) -> tuple[Sampler[int] | None, bool]:
    """The training loader's ``(sampler, shuffle)``: a balance sampler as it is, else a shuffled shard under DDP."""
    if sampler is not None:
        return sampler, False  # balance and event samplers shard themselves
    if world_size() == 1:
        return None, True
    return ShuffledShard(n, seed, world_size(), rank()), False


def validation_sampler(n: int) -> EvalShard | None:
    """The validation loader's sampler: this rank's share under DDP, else None (every item, in order)."""
    return EvalShard(n, world_size(), rank()) if world_size() > 1 else None
