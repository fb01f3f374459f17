"""One slide through the model(s): live tiles → tile predictions → parquet, heatmaps and their value grid.

Per slide, in ``{outdir}/slides/{slide}/``: ``tile_predictions.parquet`` (``slide``, ``patient`` when known,
``loc_x``, ``loc_y`` = tile centre in level-0 px, then every prediction column, named as in training's
prediction tables), ``heatmap_{outcome}.png`` and ``heatmap.npz``. Each file is written under a temporary
name and renamed, so nothing half-written is left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from src.evaluation.heatmaps import ValueGrid, draw_heatmap
from src.inference.inputs import SlideInput
from src.inference.live_tiles import LiveTiles, StageTimes
from src.inference.models import ModelSet, truth_columns
from src.infra.files import atomic_path
from src.slides.reader import SlideReader, open_slide
from src.slides.tile_settings import TileSettings

log = logging.getLogger(__name__)

TILE_TABLE = "tile_predictions.parquet"
GRID_FILE = "heatmap.npz"


class NoTissueError(RuntimeError):
    """No tile of the slide passed the tissue filters."""


@dataclass
class PredictOptions:
    """How slides are read and drawn.

    Attributes:
        settings: Tile settings (the model's, with ``stride_div``).
        batch_size: Tiles per forward pass.
        threads: Threads reading tiles.
        as_shards: Encode each tile as its shard would (so predictions equal evaluation's).
        heatmaps: Draw heatmaps (the value grid is written either way).
        heatmap_px: Longest side of the thumbnail the heatmaps are drawn over.
        mpp_override: MPP for slides whose file records none.
        backend: The slide reader.
    """

    settings: TileSettings
    batch_size: int = 64
    threads: int = 2
    as_shards: bool = True
    heatmaps: bool = True
    heatmap_px: int = 1024
    mpp_override: float | None = None
    backend: str | None = None


@dataclass
class SlideResult:
    """What one slide gave.

    Attributes:
        tiles: Its tile prediction table (with truth columns in evaluation mode).
        seconds: Wall-clock time of the slide.
        times: The split of that time by stage.
        row: The slide's prediction row when the model predicts slides itself (MIL); None: the mean of its tiles.
        colour: The slide's colour (mean per-channel tile mean in [0, 1], ``src.data.tile_colour``).
    """

    tiles: pd.DataFrame
    seconds: float
    times: StageTimes
    row: dict | None = None
    colour: list[float] | None = None


def predict_slide(
    slide: SlideInput,
    models: ModelSet,
    options: PredictOptions,
    outdir: Path,
    targets: Sequence[np.ndarray] | None = None,
    evaluated: Sequence = (),
) -> SlideResult:
    """Predict every tissue tile of one slide and write its files.

    Args:
        slide: The slide (its annotation row gives the clinical inputs).
        models: The model(s).
        options: Reading and drawing options.
        outdir: The prediction folder (files go to ``outdir/slides/{slide}/``).
        targets: In evaluation mode, one ``(1, n_targets)`` part per outcome of ``evaluated``.
        evaluated: The outcomes evaluated.

    Raises:
        FileNotFoundError: no file for the slide.
        SlideError: a slide that cannot be opened (corrupt, no MPP), naming it.
        NoTissueError: no tile passed the tissue filters.
    """
    start = time.perf_counter()
    if slide.path is None:
        raise FileNotFoundError("no file for this slide among slides=")
    clinical = models.clinical(slide.row) if models.input_header else [torch.zeros(1, 0) for _ in models.members]
    with open_slide(slide.path, mpp_override=options.mpp_override, backend=options.backend) as reader:
        live, locs, predictions = live_outputs(reader, options, lambda images: models.predict(images, clinical))
        times = live.times
        tick = time.perf_counter()
        columns = {c: np.concatenate([p[c] for p in predictions]) for c in models.output_columns()}
        table = tile_table(slide, locs, columns, targets, evaluated)
        folder = outdir / "slides" / slide.name
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / TILE_TABLE, fsync=False) as tmp:
            table.to_parquet(tmp, index=False)
        grid = ValueGrid.from_tiles(
            locs[:, 0], locs[:, 1], columns, live.first_loc, live.shape, live.grid.stride, reader.dimensions
        )
        with atomic_path(folder / GRID_FILE, fsync=False) as tmp:
            grid.save(tmp, mpp=reader.mpp, tile_px=options.settings.tile_px, tile_extent_px=live.grid.full_extract_px)
        if options.heatmaps:
            draw_heatmaps(reader.get_thumbnail(options.heatmap_px), grid, models, folder, slide.name)
        times.drawing += time.perf_counter() - tick
    return SlideResult(table, time.perf_counter() - start, times, colour=live.colour)


def live_outputs(
    reader: SlideReader, options: PredictOptions, step: Callable[[torch.Tensor], Any]
) -> tuple[LiveTiles, np.ndarray, list[Any]]:
    """``step`` on every batch of the slide's live tiles, timed as the model stage.

    Returns:
        ``(live, locs, outputs)``: the slide's tiles (with their stage times), the ``(n, 2)`` tile centres and
        ``step``'s output per batch.

    Raises:
        NoTissueError: no tile passed the tissue filters.
    """
    live = LiveTiles.open(reader, options.settings)
    locs, outputs = [], []
    for images, batch_locs in live.batches(options.batch_size, options.threads, options.as_shards):
        tick, cpu = time.perf_counter(), time.thread_time()
        outputs.append(step(images))
        live.times.model += time.perf_counter() - tick
        live.times.model_cpu += time.thread_time() - cpu
        locs.append(batch_locs)
    if not locs:
        filters = options.settings.tissue
        raise NoTissueError(
            f"no tissue: none of its {len(live.grid)} grid tiles passed the tissue filters (qc={filters.qc}, "
            f"grayspace_fraction={filters.grayspace_fraction}, whitespace_fraction={filters.whitespace_fraction})"
        )
    return live, np.concatenate(locs), outputs


def tile_table(
    slide: SlideInput,
    locs: np.ndarray,
    columns: Mapping[str, np.ndarray],
    targets: Sequence[np.ndarray] | None,
    evaluated: Sequence,
) -> pd.DataFrame:
    """The slide's tile table: slide, patient, loc_x, loc_y, [truth columns], prediction columns."""
    n = len(locs)
    table: dict[str, object] = {"slide": [slide.name] * n}
    if slide.patient is not None:
        table["patient"] = [slide.patient] * n
    table["loc_x"], table["loc_y"] = locs[:, 0], locs[:, 1]
    for outcome, part in zip(evaluated, targets or (), strict=True):
        table.update(truth_columns(outcome, np.repeat(part, n, axis=0)))
    table.update(columns)
    return pd.DataFrame(table)


def draw_heatmaps(thumbnail: np.ndarray, grid: ValueGrid, models: ModelSet, folder: Path, slide: str) -> list[Path]:
    """One ``heatmap_{outcome}.png`` per outcome, with the panels its kind chooses."""
    written = []
    for outcome, layers in models.heatmap_layers().items():
        path = folder / f"heatmap_{outcome}.png"
        with atomic_path(path, fsync=False) as tmp:
            draw_heatmap(thumbnail, grid, layers, tmp, f"{slide}: {outcome}")
        written.append(path)
    return written
