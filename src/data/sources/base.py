"""The tile-source interface: what a source prepares, and the torch datasets it hands the data module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from torch.utils.data import IterableDataset

from src.data.dataset import Dataset
from src.data.tiles import TileItems


@dataclass
class SourceTiles:
    """The tiles of one side of a fold as a source serves them.

    Attributes:
        data: Map-style items (random access): the validation pass, the samplers of ``training_balance``
            and the stain normalizer's fit read these; their ``transform`` is the tile transform hook.
        slide_idx: (n_tiles,) slide of each tile (index into the slides the source was given).
        locs: (n_tiles, 2) tile centres in level-0 pixels.
        slide_urls: Where each slide's tiles are read from, for streaming sources (None: not streamed).
    """

    data: TileItems
    slide_idx: np.ndarray
    locs: np.ndarray
    slide_urls: list[str] | None = None


class TileSource(ABC):
    """Where tiles come from (``dataset.tile_source``): shards, streamed shards, or the slides themselves.

    A new source is one module holding a subclass and one ``conf/dataset/<name>.yaml`` whose ``tile_source``
    ``_target_`` names it; nothing else changes. Every source yields the same items (:class:`TileItems`), so
    models, samplers, normalizers and augmentations do not know which one is in use.
    """

    name: ClassVar[str] = ""

    @abstractmethod
    def prepare(self, dataset: Dataset, workers: int = 1) -> dict[str, str]:
        """Make whatever the slides of ``dataset`` still lack (shards, location caches) before folds train.

        A slide that cannot be prepared (a corrupt or truncated file, no MPP...) does not stop the others; what
        a run does about it is ``on_slide_error`` (``src.project.ensure_tiles``).

        Returns:
            Slide → reason, for each slide that failed (empty: every slide is ready).
        """

    @abstractmethod
    def tile_counts(self, dataset: Dataset) -> dict[str, int]:
        """Slide → number of tiles (after :meth:`prepare`); slides with none are left out of the folds."""

    @abstractmethod
    def tiles(
        self, dataset: Dataset, slides: list[str], targets: np.ndarray, clinical: np.ndarray | None
    ) -> SourceTiles:
        """The tiles of ``slides`` (a subset of ``dataset``'s, in this order), joined with their targets."""

    def slide_record(self, dataset: Dataset, slide: str) -> dict | None:
        """What the slide's prepared tiles are, for what is built on them (feature bags); None: not prepared.

        Returns:
            ``num_tiles``, ``mpp`` (level 0), ``extent_px`` (a tile's side in level-0 px) and ``fingerprint``
            (plain data that changes whenever the tiles would: a shard's tar record, a slide file's fingerprint).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot describe its tiles for feature bags")

    def training_stream(
        self, tiles: SourceTiles, slide_weights: np.ndarray | None, batch_size: int, seed: int
    ) -> IterableDataset | None:
        """Training batches as a stream (None: the data module samples ``tiles.data`` with the balance sampler).

        Args:
            tiles: The training tiles.
            slide_weights: (n_slides,) share of the training stream each slide should get under
                ``training_balance`` (None: every tile equally likely).
            batch_size: Tiles per batch.
            seed: Random seed.
        """
        return None


def failed_slides(report: pd.DataFrame, what: str) -> dict[str, str]:
    """Slide → ``"<what> failed: <error>"`` for the failed rows of a preparation report.

    Args:
        report: One row per slide: ``slide``, ``status`` (``failed`` or another), ``error``.
        what: What was being prepared (``"Tile extraction"``).
    """
    failed = report[report.status == "failed"]
    return {str(r.slide): f"{what} failed: {r.error}" for r in failed.itertuples()}


def raise_failures(failures: Mapping[str, str], hint: str = "") -> None:
    """Raise when some slides could not be prepared (`failed_slides`).

    Raises:
        RuntimeError: ``"N slide(s) could not be prepared: <slide>: <reason>; ...<hint>"``.
    """
    if failures:
        reasons = "; ".join(f"{slide}: {reason}" for slide, reason in failures.items())
        raise RuntimeError(f"{len(failures)} slide(s) could not be prepared: {reasons}{hint}")
