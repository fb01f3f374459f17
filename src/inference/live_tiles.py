"""Tiles read live from a slide, exactly as extraction would cut them for the shards.

The grid, the Otsu mask and the grayspace/whitespace filters are extraction's own functions
(:func:`~src.slides.grid.tile_grid`, :func:`~src.slides.tiles.qc_keep`, :func:`~src.slides.tiles.iter_tiles`)
with the model's tile settings, so the same slide gives the same tile locations as its shard. With
``as_shards`` each tile also goes through the shard's encoding (JPEG at its quality, or PNG) and the
training loader's decoder, so the model sees the very pixels it was evaluated on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from src.data.tile_colour import tile_means
from src.data.tiles import decode_tile
from src.slides.grid import TileGrid
from src.slides.reader import SlideReader
from src.slides.tile_settings import TileSettings
from src.slides.tiles import iter_tiles
from src.slides.tiling import encode_tile, tile_plan


@dataclass
class StageTimes:
    """Seconds spent by the main thread in each stage of a prediction.

    Attributes:
        reading: Waiting for tiles (grid, tissue mask, reading, filtering, shard encoding).
        model: Normalizer and network.
        drawing: Thumbnail, heatmaps, tables.
        model_cpu: CPU seconds of the main thread in the model stage (all of the model's CPU time when torch
            runs on one thread).
    """

    reading: float = 0.0
    model: float = 0.0
    drawing: float = 0.0
    model_cpu: float = 0.0

    def add(self, other: StageTimes) -> None:
        """Add another prediction's times to these."""
        self.reading += other.reading
        self.model += other.model
        self.drawing += other.drawing
        self.model_cpu += other.model_cpu


@dataclass
class LiveTiles:
    """The tiles of one slide for the model's settings.

    Attributes:
        reader: The open slide.
        settings: The tile settings (the model's, with the ``stride_div`` asked for).
        grid: Its tile grid.
        keep: Which grid tiles pass the Otsu mask.
        times: Where the time went.
        colour_sum: Sum over the tiles read so far of their per-channel means in [0, 1] (see :attr:`colour`).
        n_read: Tiles read so far.
    """

    reader: SlideReader
    settings: TileSettings
    grid: TileGrid
    keep: np.ndarray
    times: StageTimes = field(default_factory=StageTimes)
    colour_sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    n_read: int = 0

    @property
    def colour(self) -> list[float] | None:
        """The slide's colour: the mean of its tiles' per-channel means (``src.data.tile_colour``); None: no tile."""
        return (self.colour_sum / self.n_read).tolist() if self.n_read else None

    @classmethod
    def open(cls, reader: SlideReader, settings: TileSettings) -> LiveTiles:
        """Lay the grid and compute the tissue mask of ``reader``'s slide."""
        start = time.perf_counter()
        grid, keep = tile_plan(reader, settings)  # extraction's grid and Otsu mask
        tiles = cls(reader, settings, grid, keep)
        tiles.times.reading += time.perf_counter() - start
        return tiles

    @property
    def shape(self) -> tuple[int, int]:
        """The grid's ``(rows, cols)``."""
        xs, ys = np.unique(self.grid.coords[:, 0]), np.unique(self.grid.coords[:, 1])
        return len(ys), len(xs)

    @property
    def first_loc(self) -> tuple[int, int]:
        """Centre of the grid's first tile, level-0 px."""
        return (self.grid.full_extract_px // 2, self.grid.full_extract_px // 2)

    def batches(
        self, batch_size: int, threads: int = 2, as_shards: bool = True
    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """Yield ``(images, locs)``: uint8 ``(n, 3, tile_px, tile_px)`` tiles and their ``(n, 2)`` centres.

        Tiles are read on ``threads`` threads, ahead of the caller, in grid order (the shard's order).
        """
        transform = self._shard_pixels if as_shards else _as_tensor
        tiles = iter_tiles(self.reader, self.grid, self.settings.tissue, transform, threads, self.keep)
        while True:
            start = time.perf_counter()
            chunk = [item for _, item in zip(range(batch_size), tiles)]
            self.times.reading += time.perf_counter() - start
            if not chunk:
                return
            images = torch.stack([image for image, _, _ in chunk])
            self.colour_sum += tile_means(images).sum(dim=0).numpy()
            self.n_read += len(images)
            yield images, np.asarray([(x, y) for _, x, y in chunk], np.int64)

    def _shard_pixels(self, tile: np.ndarray) -> torch.Tensor:
        """The tile as its shard stores it and training's loader decodes it."""
        return decode_tile(encode_tile(tile, self.settings.img_format, self.settings.jpeg_quality))


def _as_tensor(tile: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(tile)).permute(2, 0, 1).contiguous()


def with_stride(settings: TileSettings, stride_div: int | None) -> TileSettings:
    """The model's tile settings with another ``stride_div`` (``None``: the model's own)."""
    if stride_div is None:
        return settings
    return TileSettings.from_config({**settings.to_dict(), "stride_div": int(stride_div)})
