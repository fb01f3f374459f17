"""Sharding by DDP rank: each rank's share keeps the samplers' guarantees, and the ranks never overlap."""

from __future__ import annotations

import numpy as np
import pytest

from src.samplers.balance import EpochWeightedSampler, tile_weights
from src.samplers.events import EventBatchSampler
from src.samplers.shards import EvalShard, ShuffledShard
from tests.samplers.test_balance import CATEGORIES, PATIENTS, TILES
from tests.samplers.test_events import SLIDE_EVENTS, SLIDE_PATIENTS
from tests.samplers.test_events import TILES as EVENT_TILES


@pytest.mark.parametrize("n", [0, 1, 7, 10])
def test_eval_shards_cover_every_item_exactly_once(n: int) -> None:
    shards = [list(EvalShard(n, 3, r)) for r in range(3)]
    seen = sorted(i for shard in shards for i in set(shard))
    assert sorted(set(seen)) == list(range(n))
    if n >= 3:  # no padding: every item on exactly one rank, in order
        assert seen == list(range(n)) and all(shard == sorted(shard) for shard in shards)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shuffled_shards_are_one_pass_with_equal_lengths() -> None:
    shards = [ShuffledShard(10, seed=3, num_replicas=3, rank=r) for r in range(3)]
    draws = [list(s) for s in shards]
    assert {len(d) for d in draws} == {4} == {len(s) for s in shards}  # ceil(10 / 3), the same for every rank
    assert set().union(*map(set, draws)) == set(range(10))  # every item in the epoch, two repeated as padding
    again = [list(s) for s in shards]
    assert draws != again  # the next epoch reshuffles


def test_balance_sampler_shards_are_the_single_process_draws() -> None:
    tiles = np.tile(TILES, 20)  # 20,000 tiles: 10,000 draws per rank
    weights = tile_weights("slide", tiles, PATIENTS, CATEGORIES)
    whole = list(EpochWeightedSampler(weights, seed=5, num_replicas=1, rank=0))
    assert len(whole) == len(tiles)
    shards = [list(EpochWeightedSampler(weights, seed=5, num_replicas=2, rank=r)) for r in range(2)]
    assert [len(s) for s in shards] == [len(tiles) // 2] * 2
    interleaved = [i for pair in zip(*shards, strict=True) for i in pair]
    assert interleaved == whole  # the two ranks draw exactly what one process would, between them
    for shard in shards:  # and each rank alone is still slide-balanced
        share = np.bincount(tiles[shard], minlength=4) / len(shard)
        np.testing.assert_allclose(share, 0.25, atol=0.02)  # 4.6 standard deviations


def test_event_sampler_gives_each_rank_whole_cox_ready_blocks() -> None:
    def blocks(rank: int, world: int) -> list[tuple[int, ...]]:
        sampler = EventBatchSampler(
            EVENT_TILES,
            SLIDE_PATIENTS,
            SLIDE_EVENTS,
            batch_size=16,
            min_events=3,
            seed=4,
            num_replicas=world,
            rank=rank,
        )
        order = list(sampler)
        assert len(order) == len(sampler)
        return [tuple(order[i : i + 16]) for i in range(0, len(order), 16)]

    whole = blocks(0, 1)
    shards = [blocks(r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == -(-len(whole) // 2)  # as many batches on each rank
    assert not set(shards[0]) & set(shards[1])  # the ranks never share a block
    assert shards[0] + shards[1] != [] and set(whole) <= set(shards[0]) | set(shards[1])  # one process's blocks
    patients, events = np.asarray(SLIDE_PATIENTS), np.asarray(SLIDE_EVENTS)
    for block in shards[0] + shards[1]:  # every batch on every rank keeps the guarantees
        slides = EVENT_TILES[list(block)]
        assert len(set(patients[slides])) == 16
        assert len(set(patients[slides][events[slides] == 1])) >= 3


def test_a_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        EpochWeightedSampler(np.ones(4) / 4, seed=0, num_replicas=2, rank=2)
