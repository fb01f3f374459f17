"""Extract tissue tiles from slides into per-slide shards, resuming completed slides."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from src.extraction.report import (
    draw_thumbnail,
    report_frame,
    summarize,
    thumbnail_path,
    update_report,
    write_png_atomic,
)
from src.extraction.settings import TileSettings
from src.extraction.shards import ShardWriter, read_index, shard_dir, slide_fingerprint
from src.slides.discover import reads_format, unsupported_format
from src.slides.grid import tile_grid
from src.slides.mpp import MppChoice, mpp_source
from src.slides.reader import SlideError, backend_name, open_slide, reader_class
from src.slides.tiles import iter_tiles, qc_keep

__all__ = ["encode_tile", "extract_slide", "extract_slides", "summarize"]

log = logging.getLogger(__name__)

# Test hook: stop (sleep) after writing this many tiles of a slide, so a test can kill -9 us mid-slide.
PAUSE_ENV = "SRC_EXTRACTION_PAUSE_AFTER_TILES"
MISSING_FILE = "Slide file not found: no file for this slide in the slides folder"


def encode_tile(tile: np.ndarray, img_format: str = "jpg", quality: int = 95) -> bytes:
    """Encode an RGB uint8 tile as JPEG (at `quality`) or PNG bytes."""
    bgr = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
    if img_format == "png":
        ok, buffer = cv2.imencode(".png", bgr)
    else:
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {tile.shape} tile as {img_format}")
    return buffer.tobytes()


def extract_slide(
    slide: str,
    path: Path | None,
    folder: Path,
    settings: TileSettings,
    mpp_override: float | None = None,
    threads: int = 1,
    backend: str | None = None,
    thumbnails: bool = True,
    mpp: float | None = None,
) -> dict[str, Any]:
    """Extract one slide into `folder` (unless already complete); never raises for a bad slide.

    Tiles are streamed: read, filtered and encoded a chunk at a time (on `threads` threads) and
    appended to ``{slide}.tar.partial``, so memory does not grow with the slide.

    Args:
        slide: Slide name.
        path: Slide file; None when no file was found for the slide.
        folder: The settings' shard folder.
        settings: Tile settings.
        mpp_override: MPP for a slide file that records none.
        threads: Threads reading and encoding this slide's tiles.
        backend: Slide reader (see `src.slides.reader.reader_class`): None = tiffslide, a short
            name such as ``"openslide"``, or a dotted class path.
        thumbnails: Write ``thumbnails/{slide}.png`` with the kept tiles outlined.
        mpp: MPP that replaces the file's own (the slide's ``project.mpp_column`` value).

    Returns:
        A report row (see `src.extraction.report.REPORT_COLUMNS`), plus ``mpp_source``
        (column, slide or override) for an extracted slide.
    """
    start = time.perf_counter()
    row: dict[str, Any] = {"slide": slide, "path": str(path) if path else "", "error": ""}
    index = read_index(folder, slide, path, mpp=MppChoice(mpp, mpp_override))
    if index is not None:
        row.update(status="skipped", grid_tiles=index.get("grid_tiles"), kept_tiles=index["num_tiles"])
        row.update(seconds=index.get("seconds"), mpp=index.get("mpp"), level=index.get("level"))
        row.update(backend=index.get("backend", ""))
        return row
    try:
        reader_cls = reader_class(backend)
        row.update(backend=backend_name(reader_cls))
        if path is None:
            raise FileNotFoundError(MISSING_FILE)
        if not reads_format(reader_cls.extensions, path):
            raise SlideError(unsupported_format(path, row["backend"]))
        fingerprint = slide_fingerprint(path) if Path(path).is_file() else None
        with open_slide(path, mpp_override=mpp_override, backend=backend, mpp=mpp) as reader:
            row.update(mpp=reader.mpp, mpp_source=mpp_source(reader.mpp, reader.properties, mpp, mpp_override))
            grid = tile_grid(
                reader,
                settings.tile_px,
                settings.tile_um,
                stride_div=settings.stride_div,
                use_edge_tiles=settings.use_edge_tiles,
            )
            row.update(level=grid.level, grid_tiles=len(grid))
            tissue = settings.tissue_filter()
            keep = qc_keep(reader, grid, tissue)
            pause_after = int(os.environ.get(PAUSE_ENV, "0") or 0)

            def encode(tile: np.ndarray) -> bytes:
                return encode_tile(tile, settings.img_format, settings.jpeg_quality)

            with ShardWriter(folder, slide, settings.img_format) as writer:
                for image, loc_x, loc_y in iter_tiles(reader, grid, tissue, encode, threads=threads, keep=keep):
                    writer.add(image, loc_x, loc_y)
                    if pause_after and writer.tiles_written == pause_after:
                        _pause(writer, slide)
                if thumbnails:
                    write_png_atomic(thumbnail_path(folder, slide), draw_thumbnail(reader, grid, writer.locations))
                seconds = round(time.perf_counter() - start, 3)
                index = writer.finish(
                    settings.to_dict(),
                    grid_tiles=len(grid),
                    slide_file=fingerprint,
                    seconds=seconds,
                    mpp=reader.mpp,
                    mpp_source=row["mpp_source"],
                    level=grid.level,
                    extract_px=grid.extract_px,
                    backend=row["backend"],
                )
        row.update(status="done", kept_tiles=index["num_tiles"])
    except Exception as err:  # one bad slide must not stop the others
        log.debug("Slide %s failed", slide, exc_info=True)
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _pause(writer: ShardWriter, slide: str) -> None:
    """The kill test's hook: flush what was written, say so, and wait to be killed."""
    writer.flush()
    print(f"PAUSED {slide} after {writer.tiles_written} tiles", file=sys.stderr, flush=True)
    time.sleep(600)


def extract_slides(
    slides: Mapping[str, Path | None],
    shards_root: Path,
    settings: TileSettings,
    workers: int = 1,
    mpp_override: float | None = None,
    progress: bool = True,
    backend: str | None = None,
    thumbnails: bool = True,
    mpp_by_slide: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Extract every slide's tissue tiles into ``shards_root / settings.key``.

    Slides whose index is complete (and whose file and MPP are unchanged) are skipped; a failing slide
    (missing, corrupt, no MPP) is recorded with its reason and the others continue. Work is
    spread over `workers` cores: several slides at once in worker processes, or, with fewer
    slides than workers, threads within each slide. The folder's ``extraction_report.csv`` is
    updated with this run's rows.

    Args:
        slides: Slide name -> slide file (see `src.slides.discover.find_slides`); None = no file.
        shards_root: Root of all shard folders.
        settings: Tile settings.
        workers: Cores to use (processes over slides, threads within a slide).
        mpp_override: MPP for the slides whose file records none (a file's own MPP wins).
        progress: Show a tqdm progress bar.
        backend: Slide reader: None = tiffslide, ``"openslide"``, or a dotted class path; passed
            by name to the worker processes.
        thumbnails: Write a thumbnail PNG per slide with the kept tiles outlined.
        mpp_by_slide: Slide name -> MPP that replaces its file's own (``project.mpp_column``).
            A slide extracted before at another MPP than the one it gets now is extracted again.

    Returns:
        One row per slide, in the order of `slides`: slide, path, status (done|skipped|failed),
        grid_tiles, kept_tiles, seconds, error, mpp, level, backend (short name of the reader).
    """
    folder = shard_dir(shards_root, settings)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    todo = []
    mpps = dict(mpp_by_slide or {})
    for name, path in slides.items():
        path = Path(path) if path is not None else None
        if read_index(folder, name, path, mpp=MppChoice(mpps.get(name), mpp_override)) is not None:
            rows.append(extract_slide(name, path, folder, settings, mpp_override, mpp=mpps.get(name)))  # "skipped"
        else:
            todo.append((name, path))
    bar = tqdm(total=len(slides), initial=len(rows), desc="extract", unit="slide", disable=not progress)
    processes = max(1, min(workers, len(todo)))
    threads = max(1, workers // processes)
    jobs = [
        (name, path, folder, settings, mpp_override, threads, backend, thumbnails, mpps.get(name))
        for name, path in todo
    ]
    if processes == 1:
        for job in jobs:
            rows.append(extract_slide(*job))
            _advance(bar, rows)
    else:
        # forkserver, not fork: the caller may hold threads (torch, OpenCV, zarr's event loop) that a
        # forked child would inherit half-alive and deadlock on
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            futures = [pool.submit(extract_slide, *job) for job in jobs]
            for future in as_completed(futures):
                rows.append(future.result())
                _advance(bar, rows)
    bar.close()
    order = {name: i for i, name in enumerate(slides)}
    report = report_frame(rows)
    report = report.sort_values("slide", key=lambda s: s.map(order)).reset_index(drop=True)
    update_report(folder, report)
    return report


def _advance(bar: tqdm, rows: list[dict[str, Any]]) -> None:
    row = rows[-1]
    bar.set_postfix_str(f"{row['slide']}: {row['status']}", refresh=False)
    bar.update(1)
