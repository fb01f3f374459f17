"""``dataset=shards_stream``: the same per-slide shards, streamed with the ``webdataset`` library.

For shards kept where random access is not available (object storage, ``pipe:`` commands, http): training
reads whole shards in sequence through webdataset (``tarfile_to_samples``), mixes them in a shuffle buffer and
batches them in the loader processes. Shards are **resampled** by default: each (rank, loader process) draws
shards with replacement from its own seeded stream, so nothing needs splitting and every rank yields exactly
``len(stream)`` batches per epoch (DDP ranks never wait on each other). With ``resampled: false`` the shard
list is instead shuffled per epoch, split by node then by loader process (webdataset's ``split_by_node`` and
``split_by_worker``), and each process cycles over its part up to the same defined epoch length.

``training_balance`` is honoured **approximately**: a resampled shard is drawn with probability proportional
to its slide's target share divided by its tile count, so in expectation each slide's share of the tile stream
is the one the balance sampler of ``dataset=shards`` gives; within an epoch the stream comes in whole shards,
so shares vary more than with the exact sampler, neighbouring tiles are correlated within the shuffle buffer,
and the Cox event-aware batches become patient balancing. With ``resampled: false`` every tile is drawn about
once per epoch (``training_balance`` is then ignored, with a warning).

Validation stays exact: it uses random access to the local shards (``dataset=shards``), every tile once. The
index files (``{slide}.index.json``, a few KiB each) must be local; tars may live at ``urls``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from src.data.dataset import Dataset
from src.data.sources.base import SourceTiles
from src.data.sources.shards import ShardSource
from src.data.tiles import TileItems, decode_tile
from src.extraction.shards import IMAGE_EXTENSIONS, index_path
from src.samplers.epochs import EpochSeeded

log = logging.getLogger(__name__)


class ShardStreamSource(ShardSource):
    """Shards streamed for training, read at random for validation.

    Args:
        urls: Where the training tars are: null (the local shard folder) or a template with ``{slide}`` (and
            optionally ``{key}``, the tile-settings folder name), e.g. ``pipe:aws s3 cp s3://b/{key}/{slide}.tar -``
            or ``https://host/shards/{key}/{slide}.tar``.
        shuffle_buffer: Tiles in each loader process's shuffle buffer.
        resampled: Draw shards with replacement (slide-weighted); false: split the shard list by node and
            loader process each epoch (about every tile once per epoch, no balancing).
        epoch_tiles: Tiles per epoch over all ranks (null: the training slides' tile count).
        max_open_files: Shard files kept open per process by the random-access validation reader.
    """

    name = "shards_stream"

    def __init__(
        self,
        urls: str | None = None,
        shuffle_buffer: int = 2000,
        resampled: bool = True,
        epoch_tiles: int | None = None,
        max_open_files: int = 64,
    ) -> None:
        super().__init__(max_open_files)
        if urls is not None and "{slide}" not in str(urls):
            raise ValueError(f"dataset.tile_source.urls must contain '{{slide}}', got {urls!r}")
        if int(shuffle_buffer) < 1:
            raise ValueError(f"dataset.tile_source.shuffle_buffer must be >= 1, got {shuffle_buffer}")
        self.urls = str(urls) if urls is not None else None
        self.shuffle_buffer = int(shuffle_buffer)
        self.resampled = bool(resampled)
        self.epoch_tiles = int(epoch_tiles) if epoch_tiles else None

    def prepare(self, dataset: Dataset, workers: int = 1) -> dict[str, str]:
        """Extract missing shards locally (no ``urls``), or check that every slide has its index file.

        Returns:
            Slide → reason, for the slides whose extraction failed.

        Raises:
            FileNotFoundError: with ``urls``, slides without a complete local index file (named).
        """
        if self.urls is None:
            return super().prepare(dataset, workers)
        missing = [s for s in dataset.slides() if _index(dataset.shard_dir, s) is None]
        if missing:
            raise FileNotFoundError(
                f"dataset=shards_stream with urls: no complete index file for {len(missing)} slide(s) "
                f"{missing[:10]} in {dataset.shard_dir} (copy their {{slide}}.index.json files there)"
            )
        return {}

    def tile_counts(self, dataset: Dataset) -> dict[str, int]:
        """Slide → tiles in its shard, from the index files."""
        return {s: int((_index(dataset.shard_dir, s) or {}).get("num_tiles", 0)) for s in dataset.slides()}

    def tiles(
        self, dataset: Dataset, slides: list[str], targets: np.ndarray, clinical: np.ndarray | None
    ) -> SourceTiles:
        """Random-access tiles of ``slides`` when their tars are local, else index-only tiles (remote training).

        Validation and the normalizer's fit read at random; the training stream decodes the tars itself.
        """
        if self.urls is None or all((dataset.shard_dir / f"{s}.tar").is_file() for s in slides):
            tiles = super().tiles(dataset, slides, targets, clinical)
        else:
            entries = [_index(dataset.shard_dir, s) or {"num_tiles": 0, "locations": []} for s in slides]
            counts = [int(e["num_tiles"]) for e in entries]
            slide_idx = np.repeat(np.arange(len(slides), dtype=np.int32), counts)
            locs = np.concatenate([np.asarray(e["locations"], np.int64).reshape(-1, 2) for e in entries])
            tiles = SourceTiles(RemoteTiles(slide_idx, targets, clinical), slide_idx, locs)
        tiles.slide_urls = self._urls(dataset, slides)
        return tiles

    def _urls(self, dataset: Dataset, slides: Sequence[str]) -> list[str]:
        if self.urls is None:
            return [str(dataset.shard_dir / f"{s}.tar") for s in slides]
        return [self.urls.format(slide=s, key=dataset.shard_dir.name) for s in slides]

    def training_stream(
        self, tiles: SourceTiles, slide_weights: np.ndarray | None, batch_size: int, seed: int
    ) -> ShardStream:
        """The training batches, streamed (see the module docstring)."""
        assert tiles.slide_urls is not None  # set by tiles()
        counts = np.bincount(tiles.slide_idx, minlength=len(tiles.slide_urls))
        if not self.resampled and slide_weights is not None:
            log.warning(
                "dataset=shards_stream with resampled=false draws about every tile once per epoch: "
                "training_balance is ignored"
            )
        return ShardStream(
            tiles.data,
            tiles.slide_urls,
            counts,
            batch_size,
            slide_weights if self.resampled else None,
            epoch_tiles=self.epoch_tiles or int(counts.sum()),
            shuffle_buffer=self.shuffle_buffer,
            resampled=self.resampled,
            seed=seed,
        )


def _index(folder: Path, slide: str) -> dict | None:
    """A slide's complete index file, read without its tar (which may be remote)."""
    try:
        index = json.loads(index_path(folder, slide).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("status") != "complete":
        return None
    return index if len(index.get("locations", ())) == index.get("num_tiles") else None


class RemoteTiles(TileItems):
    """Training tiles known from their index files only: the stream decodes them; no random access."""

    def read_image(self, tile: int) -> torch.Tensor:
        """Always raises: remote shards have no random access."""
        raise RuntimeError(
            "dataset=shards_stream: these slides' tars are remote (dataset.tile_source.urls), so their tiles cannot "
            "be read at random: validation needs its shards in the local shard folder, and the stain normalizer a "
            "reference tile (normalizer.source=<image file>)"
        )


def shard_probabilities(counts: np.ndarray, slide_weights: np.ndarray | None) -> np.ndarray:
    """Probability of drawing each shard so that, in expectation, each slide gets its share of the tile stream.

    Args:
        counts: (n_slides,) tiles per shard.
        slide_weights: (n_slides,) target share of each slide (None: proportional to its tiles).

    Returns:
        (n_slides,) probabilities summing to 1 (0 for a slide without tiles).
    """
    counts = np.asarray(counts, float)
    share = counts if slide_weights is None else np.asarray(slide_weights, float) * (counts > 0)
    # a drawn shard brings all its tiles: draw it share/count as often
    p = np.divide(share, counts, out=np.zeros_like(counts), where=counts > 0)
    if p.sum() <= 0:
        raise ValueError("No training shard with tiles to stream")
    return p / p.sum()


class ShardStream(EpochSeeded, IterableDataset):
    """Batches of training items streamed from shards by webdataset, ``len(self)`` per epoch on every rank.

    Items are exactly those of the map-style sources (``tiles.item``: the same transform hook, keys and dtypes),
    collated into batches in the loader processes; use with ``DataLoader(stream, batch_size=None)``. The epoch
    (for the seeds) advances with each pass of a (persistent) loader process, or by ``set_epoch``.

    Args:
        tiles: The map-style items whose ``transform``, targets and clinical inputs the stream uses.
        urls: One URL per slide (webdataset: a path, ``file:``, ``pipe:``, http...).
        counts: (n_slides,) tiles per shard.
        batch_size: Tiles per batch.
        slide_weights: (n_slides,) target stream share of each slide (None: tile-proportional).
        epoch_tiles: Tiles per epoch over all ranks.
        shuffle_buffer: Tiles held per loader process for shuffling.
        resampled: Resample shards (weighted), or split the shard list by node and worker.
        seed: Random seed.
    """

    def __init__(
        self,
        tiles: TileItems,
        urls: Sequence[str],
        counts: np.ndarray,
        batch_size: int,
        slide_weights: np.ndarray | None = None,
        epoch_tiles: int | None = None,
        shuffle_buffer: int = 2000,
        resampled: bool = True,
        seed: int = 0,
    ) -> None:
        self.tiles = tiles
        self.urls = list(urls)
        self.counts = np.asarray(counts, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.slide_of = {url: i for i, url in enumerate(self.urls)}
        self.probabilities = shard_probabilities(self.counts, slide_weights)
        self.batch_size = int(batch_size)
        self.epoch_tiles = int(epoch_tiles if epoch_tiles is not None else self.counts.sum())
        self.shuffle_buffer = int(shuffle_buffer)
        self.resampled = bool(resampled)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return max(1, self.epoch_tiles // (_world()[1] * self.batch_size))

    def __iter__(self) -> Iterator[dict]:
        rank = _world()[0]
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = self.epoch
        self.epoch += 1
        rng = np.random.default_rng([self.seed, epoch, rank, worker])
        total = len(self)
        mine = total // workers + (worker < total % workers)  # the rank's batches, split between its workers
        pipeline = wds.DataPipeline(
            lambda: self._shards(rng, epoch),  # a stage without input: called once
            wds.tarfile_to_samples(),
            wds.shuffle(
                self.shuffle_buffer,
                initial=min(self.shuffle_buffer, 100),
                rng=random.Random(int(rng.integers(1 << 62))),
            ),
            wds.map(self._item),
            wds.batched(self.batch_size, collation_fn=default_collate, partial=False),
        )
        yield from islice(pipeline, mine)

    def _shards(self, rng: np.random.Generator, epoch: int) -> Iterator[dict]:
        """URLs to read, forever: weighted draws, or this (rank, worker)'s part of the epoch's shuffled list."""
        if self.resampled:
            while True:
                for i in rng.choice(len(self.urls), size=64, p=self.probabilities):
                    yield {"url": self.urls[int(i)]}
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.urls))  # the same on every rank
        mine = list(wds.split_by_worker(wds.split_by_node(iter([{"url": self.urls[i]} for i in order]))))
        if not mine:
            rank, world = _world()
            raise ValueError(
                f"dataset=shards_stream resampled=false: rank {rank} of {world} has no training shard of "
                f"{len(self.urls)} for its loader process; use fewer loader processes or resampled=true"
            )
        while True:
            yield from (dict(shard) for shard in mine)

    def _item(self, sample: dict) -> dict:
        slide = self.slide_of[sample["__url__"]]
        ext = next(e for e in IMAGE_EXTENSIONS if e in sample)
        tile = int(self.starts[slide]) + int(sample["__key__"].rsplit("/", 1)[-1])  # write order = index order
        return self.tiles.item(decode_tile(sample[ext]), slide, tile)


def _world() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, or (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
