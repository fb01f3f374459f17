"""Parts of the sources: the bounded reader pool, the streamed shard weights and epoch length under DDP, and
clinical inputs, normalizers and augmentation on live tiles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from src.data.sources import shards_stream
from src.data.sources.shards_stream import ShardStream, shard_probabilities
from src.data.sources.wsi import SlideTileDataset
from src.samplers.balance import tile_weights


def test_reader_pool_is_bounded_and_per_process(make_module) -> None:
    data = make_module("wsi", "dataset.tile_source.max_open_slides=2").train.data
    assert isinstance(data, SlideTileDataset)
    firsts = [int(np.flatnonzero(data.slide_idx == s)[0]) for s in range(len(data.paths))]
    assert len(firsts) > 3
    for _ in range(2):
        for tile in firsts:
            data.read_image(tile)
            assert data.open_slides <= 2
    copy = pickle.loads(pickle.dumps(data))  # what a spawned loader process gets: no open reader
    assert copy.open_slides == 0
    torch.testing.assert_close(copy.read_image(firsts[0]), data.read_image(firsts[0]))


def test_shard_probabilities_give_each_slide_its_balanced_share() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 500, 9)
    slide_idx = np.repeat(np.arange(9), counts)
    patients = [f"p{i // 2}" for i in range(9)]
    for strategy in ("tile", "slide", "patient"):
        share = np.bincount(slide_idx, tile_weights(strategy, slide_idx, patients), 9)  # the exact sampler's
        p = shard_probabilities(counts, share)
        draws = rng.choice(9, size=200_000, p=p)  # brute force: whole shards drawn, tiles counted
        tiles = np.bincount(draws, minlength=9) * counts
        np.testing.assert_allclose(tiles / tiles.sum(), share, atol=0.01)


def test_every_rank_streams_the_same_number_of_batches(make_module, monkeypatch) -> None:
    module = make_module("shards_stream")
    stream = module.train_dataloader().dataset
    assert isinstance(stream, ShardStream)
    lengths = {}
    for rank in (0, 1):  # two DDP ranks, unequal data behind them: the same defined epoch length
        monkeypatch.setattr(shards_stream, "_world", lambda rank=rank: (rank, 2))
        batches = list(iter(stream))
        assert len(batches) == len(stream) == len(module.train.data) // (2 * 16)
        lengths[rank] = [len(b["tile"]) for b in batches]
        assert set(lengths[rank]) == {16}
    assert lengths[0] == lengths[1]


def test_live_tiles_take_clinical_inputs_normalizer_and_augmentation(make_module) -> None:
    overrides = ("normalizer=reinhard", "input_header=[age]", "augment=default")
    wsi, shards = make_module("wsi", *overrides), make_module("shards", *overrides)
    # fitted on the same tiles, whose pixels differ by the JPEG error (its chroma subsampling narrows colour spreads)
    for key, value in wsi.normalizer.target.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(shards.normalizer.target[key]), rtol=0.1, atol=0.02)
    batch = next(iter(wsi.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["clinical"].shape == (len(batch["image"]), 1)
    torch.testing.assert_close(batch["clinical"], shards.train.data.clinical[batch["slide"]])


@pytest.mark.parametrize("key", ["max_open_slides"])
def test_bad_pool_size_names_the_key(make_module, key: str) -> None:
    from src.data.sources.wsi import WsiSource

    with pytest.raises(ValueError, match=key):
        WsiSource(max_open_slides=0)
