"""``dataset=wsi``: train straight from the slides, no shards written.

The tile locations are extraction's (`src.extraction.locations`: same grid, Otsu mask and grayspace /
whitespace filters, so a slide's tiles are exactly its shard's for the same ``tiles`` settings), computed once
per slide and cached next to the project, keyed like the shard folders: a second run starts at once. Tiles are
then read at random positions by the slide reader (the tiffslide backend decodes stored JPEG tiles directly,
`src.slides.jpeg_tiles`), each loader process keeping a bounded LRU pool of open slides. The dataset is
map-style, so every ``training_balance``, the Cox event batches, exactly-once validation and DDP sharding work
unchanged. Memory per process is the location arrays (16 bytes a tile) plus at most ``max_open_slides`` open
readers and their small decoded-tile caches, whatever the number and size of the slides.

Pixels are the slide's own: a shard holds the same tile after a JPEG round trip (``tiles.jpeg_quality``), so
the two sources differ by that JPEG error only.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.data.dataset import Dataset
from src.data.sources.base import SourceTiles, TileSource, failed_slides
from src.data.tiles import TileItems
from src.extraction.locations import cache_slides, locations_dir, read_locations
from src.slides.mpp import MppChoice
from src.slides.reader import SlideReader, open_slide

LOCATIONS_DIR = "locations"  # next to project.shards_dir by default


class WsiSource(TileSource):
    """Tiles read live from the slide files.

    Args:
        locations_dir: Root of the location caches (null: ``locations/`` next to ``project.shards_dir``).
        max_open_slides: Slides kept open per loader process (least recently used closed first).
    """

    name = "wsi"

    def __init__(self, locations_dir: str | Path | None = None, max_open_slides: int = 8) -> None:
        if int(max_open_slides) < 1:
            raise ValueError(f"dataset.tile_source.max_open_slides must be >= 1, got {max_open_slides}")
        self.root = Path(locations_dir) if locations_dir else None
        self.max_open_slides = int(max_open_slides)

    def folder(self, dataset: Dataset) -> Path:
        """The location cache folder of ``dataset``'s tile settings."""
        root = self.root
        if root is None:
            if dataset.shards_dir is None:
                raise ValueError("dataset=wsi needs project.shards_dir or dataset.tile_source.locations_dir")
            root = Path(dataset.shards_dir).parent / LOCATIONS_DIR
        assert dataset.tiles is not None, "a Dataset read by a tile source has tile settings"
        return locations_dir(root, dataset.tiles)

    def prepare(self, dataset: Dataset, workers: int = 1) -> dict[str, str]:
        """Compute the tile locations of the slides that have no complete, current cache.

        Returns:
            Slide → reason, for the slides that cannot be read.
        """
        folder = self.folder(dataset)
        assert dataset.tiles is not None  # checked by folder()
        report = cache_slides(
            dataset.slide_paths(),
            folder.parent,
            dataset.tiles,
            workers=int(workers),
            mpp_override=dataset.mpp_override,
            backend=dataset.backend,
            mpp_by_slide=dataset.slide_mpps(),
        )
        return failed_slides(report, "Tile locations")

    def tile_counts(self, dataset: Dataset) -> dict[str, int]:
        """Slide → cached tile count (0 without a complete cache)."""
        folder = self.folder(dataset)
        return {s: int((read_locations(folder, s) or {}).get("num_tiles", 0)) for s in dataset.slides()}

    def slide_record(self, dataset: Dataset, slide: str) -> dict | None:
        """The slide's complete location cache: tile count, MPP, tile extent and slide-file fingerprint."""
        paths, mpps = dataset.slide_paths(), dataset.slide_mpps()
        choice = MppChoice(mpps.get(slide), dataset.mpp_override)
        entry = read_locations(self.folder(dataset), slide, paths[slide], choice)
        if entry is None:
            return None
        return {
            "num_tiles": int(entry["num_tiles"]),
            "mpp": entry.get("mpp"),
            "extent_px": entry.get("full_extract_px"),
            "fingerprint": {"slide_file": entry.get("slide_file"), "source": "wsi"},
        }

    def tiles(
        self, dataset: Dataset, slides: list[str], targets: np.ndarray, clinical: np.ndarray | None
    ) -> SourceTiles:
        """The cached tiles of ``slides``, read from their files.

        Raises:
            FileNotFoundError: a slide has no complete location cache for its current file and MPP.
        """
        folder, paths, mpps = self.folder(dataset), dataset.slide_paths(), dataset.slide_mpps()
        entries = []
        for slide in slides:
            entry = read_locations(folder, slide, paths[slide], MppChoice(mpps.get(slide), dataset.mpp_override))
            if entry is None:
                raise FileNotFoundError(
                    f"No complete tile-location cache for slide '{slide}' in {folder} (run train.py, which computes it)"
                )
            entries.append(entry)
        data = SlideTileDataset(
            [paths[s] for s in slides],
            entries,
            targets,
            clinical,
            open_kwargs=[
                {"mpp_override": dataset.mpp_override, "backend": dataset.backend, "mpp": mpps.get(s)} for s in slides
            ],
            max_open_slides=self.max_open_slides,
        )
        return SourceTiles(data, data.slide_idx, data.locs)


class SlideTileDataset(TileItems):
    """Tiles at cached locations, read from the slide files through a per-process LRU pool of readers.

    Args:
        paths: Slide file of each slide.
        entries: Each slide's location cache (`src.extraction.locations.read_locations`).
        targets: (n_slides, n_targets) encoded outcomes.
        clinical: (n_slides, n_clinical) clinical inputs (None: none).
        transform: uint8 tile → uint8 tile, or None.
        open_kwargs: Per slide, what `open_slide` needs besides the path (backend, MPP).
        max_open_slides: Readers kept open per process.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        entries: Sequence[Mapping[str, Any]],
        targets: np.ndarray,
        clinical: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        open_kwargs: Sequence[Mapping[str, Any]] | None = None,
        max_open_slides: int = 8,
    ) -> None:
        counts = [int(e["num_tiles"]) for e in entries]
        slide_idx = np.repeat(np.arange(len(entries), dtype=np.int32), counts)
        super().__init__(slide_idx, targets, clinical, transform)
        self.paths = [Path(p) for p in paths]
        self.locs = np.concatenate(
            [np.asarray(e["locations"], np.int64).reshape(-1, 2) for e in entries] or [np.zeros((0, 2), np.int64)]
        )
        # how to read each slide's tiles: level, side at that level, side at level 0, output side
        self.geometry = np.asarray(
            [(e["level"], e["extract_px"], e["full_extract_px"], e["settings"]["tile_px"]) for e in entries], np.int64
        ).reshape(-1, 4)
        self.open_kwargs = [dict(k) for k in (open_kwargs or [{}] * len(entries))]
        self.max_open_slides = int(max_open_slides)
        self._readers: OrderedDict[int, SlideReader] = OrderedDict()
        self._pid = -1

    def reader(self, slide: int) -> SlideReader:
        """The open reader of slide ``slide`` (opened on first use; the least recently used one closed)."""
        if self._pid != os.getpid():  # opened in a parent process: never share readers
            self._readers, self._pid = OrderedDict(), os.getpid()
        reader = self._readers.get(slide)
        if reader is None:
            reader = open_slide(self.paths[slide], **self.open_kwargs[slide])
            self._readers[slide] = reader
            if len(self._readers) > self.max_open_slides:
                self._readers.popitem(last=False)[1].close()
        else:
            self._readers.move_to_end(slide)
        return reader

    @property
    def open_slides(self) -> int:
        """Readers open in this process."""
        return len(self._readers) if self._pid == os.getpid() else 0

    def read_image(self, tile: int) -> torch.Tensor:
        """Read tile ``tile`` from its slide as a uint8 CxHxW RGB tensor."""
        slide = int(self.slide_idx[tile])
        level, extract_px, full_extract_px, tile_px = (int(v) for v in self.geometry[slide])
        x, y = (int(v) - full_extract_px // 2 for v in self.locs[tile])  # centre → top-left, as the grid
        array = self.reader(slide).read_tile((x, y), level, extract_px, tile_px)
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()

    def close(self) -> None:
        """Close this process's readers."""
        if self._pid == os.getpid():
            while self._readers:
                self._readers.popitem()[1].close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_readers"], state["_pid"] = OrderedDict(), -1  # readers are per process, never pickled
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown the files close with the process
            self.close()
