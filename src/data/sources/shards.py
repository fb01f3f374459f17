"""``dataset=shards``: per-slide tar shards, extracted on first use, read at random (one ``pread`` per tile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.data.dataset import Dataset
from src.data.sources.base import SourceTiles, TileSource, failed_slides
from src.data.tiles import TileDataset, TileIndex
from src.extraction.extract import extract_slides
from src.extraction.shards import read_index
from src.slides.mpp import MppChoice


class ShardSource(TileSource):
    """Tiles from the shards of ``project.shards_dir`` (exact balanced sampling, exactly-once validation).

    Args:
        max_open_files: Shard files kept open per loader process.
    """

    name = "shards"

    def __init__(self, max_open_files: int = 64) -> None:
        self.max_open_files = int(max_open_files)

    def prepare(self, dataset: Dataset, workers: int = 1) -> dict[str, str]:
        """Extract the shards that are missing (complete, same slide file, same MPP count as there).

        Returns:
            Slide → reason, for the slides whose extraction failed.
        """
        missing = missing_shards(dataset)
        if not missing:
            return {}
        assert dataset.shards_dir is not None and dataset.tiles is not None  # checked by missing_shards (shard_dir)
        report = extract_slides(
            missing,
            Path(dataset.shards_dir),
            dataset.tiles,
            workers=int(workers),
            mpp_override=dataset.mpp_override,
            backend=dataset.backend,
            mpp_by_slide=dataset.slide_mpps(),
        )
        return failed_slides(report, "Tile extraction")

    def tile_counts(self, dataset: Dataset) -> dict[str, int]:
        """Slide → tiles in its complete shard (0 without one)."""
        return {s: int((read_index(dataset.shard_dir, s) or {}).get("num_tiles", 0)) for s in dataset.slides()}

    def slide_record(self, dataset: Dataset, slide: str) -> dict | None:
        """The slide's complete shard: its tile count, MPP, tile extent and tar record (None: no shard)."""
        index = read_index(dataset.shard_dir, slide)
        if index is None:
            return None
        extent = index.get("full_extract_px") or index.get("extract_px")  # older shards: extracted at level 0
        return {
            "num_tiles": int(index["num_tiles"]),
            "mpp": index.get("mpp"),
            "extent_px": extent,
            "fingerprint": index.get("tar"),
        }

    def tiles(
        self, dataset: Dataset, slides: list[str], targets: np.ndarray, clinical: np.ndarray | None
    ) -> SourceTiles:
        """The shard tiles of ``slides``."""
        index = TileIndex.from_shards(dataset.shard_dir, slides)
        data = TileDataset(index, targets, clinical, max_open_files=self.max_open_files)
        return SourceTiles(data, index.slide_idx, index.loc)


def missing_shards(dataset: Dataset) -> dict[str, Path]:
    """Slide → file of the slides whose shard is missing, unfinished, damaged (its CRC32 checked) or stale."""
    mpps = dataset.slide_mpps()
    return {
        slide: path
        for slide, path in dataset.slide_paths().items()
        if read_index(dataset.shard_dir, slide, path, MppChoice(mpps.get(slide), dataset.mpp_override), verify=True)
        is None
    }
