"""Extract tissue tiles from slides into per-slide shards, resuming completed slides.

Runs may share a shard folder: a slide is extracted under its lock (`src.infra.locks`), so a
second run skips the slides the first is extracting, does the others, then waits for the skipped ones
and reports them as complete. Worker processes exit with the run that started them
(`src.extraction.workers`), and every failure, a full disk included, deletes its temporary files.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from src.extraction.report import (
    THUMBNAIL_DIR,
    draw_thumbnail,
    report_frame,
    summarize,
    thumbnail_path,
    update_report,
    write_thumbnail,
)
from src.extraction.shard_crc import VERIFIED_SUFFIX
from src.extraction.shards import (
    INDEX_SUFFIX,
    ShardWriter,
    index_path,
    lock_path,
    read_index,
    shard_damage,
    shard_dir,
    slide_fingerprint,
    tar_path,
)
from src.extraction.workers import die_with_parent
from src.infra.files import DISK_FULL_ERRNOS
from src.infra.locks import FileLock
from src.infra.temp_files import find_leftovers, remove_leftovers
from src.slides.discover import reads_format, unsupported_format
from src.slides.mpp import MppChoice, mpp_source
from src.slides.reader import SlideError, backend_name, open_slide, reader_class
from src.slides.tile_settings import TileSettings
from src.slides.tiles import iter_tiles
from src.slides.tiling import encode_tile, tile_plan

__all__ = ["extract_slide", "extract_slides", "summarize"]

log = logging.getLogger(__name__)

# Test hooks: stop after writing this many tiles of a slide (so a test can kill -9 us mid-slide, or
# make two runs overlap), for this many seconds (default 600), or until this file exists.
PAUSE_ENV = "SRC_EXTRACTION_PAUSE_AFTER_TILES"
PAUSE_SECONDS_ENV = "SRC_EXTRACTION_PAUSE_SECONDS"
PAUSE_UNTIL_ENV = "SRC_EXTRACTION_PAUSE_UNTIL"
MISSING_FILE = "Slide file not found: no file for this slide in the slides folder"
BUSY = "busy"  # extract_slide's status when another run holds the slide (never in a report)


def extract_slide(
    slide: str,
    path: Path | None,
    folder: Path,
    settings: TileSettings,
    mpp_override: float | None = None,
    threads: int = 1,
    backend: str | None = None,
    thumbnails: bool = True,
    wait: bool = True,
    leftovers: Sequence[Path] = (),
    mpp: float | None = None,
) -> dict[str, Any]:
    """Extract one slide into `folder` (unless already complete); never raises for a bad slide.

    Tiles are streamed: read, filtered and encoded a chunk at a time (on `threads` threads) and
    appended to a temporary tar, so memory does not grow with the slide. The slide's lock is held
    meanwhile; a slide that another run completed while we waited for its lock is skipped.

    Args:
        slide: Slide name.
        path: Slide file; None when no file was found for the slide.
        folder: The settings' shard folder.
        settings: Tile settings.
        mpp_override: MPP for a slide file that records none.
        threads: Threads reading and encoding this slide's tiles.
        backend: Slide reader (see `src.slides.reader.reader_class`): None = tiffslide, a short
            name such as ``"openslide"``, or a dotted class path.
        thumbnails: Write ``thumbnails/{slide}.jpg`` with the kept tiles outlined.
        wait: Wait for the slide's lock when another run holds it; False: return at once with status
            `BUSY` (and the holder in ``error``).
        leftovers: Temporary files of this slide left by killed runs (deleted once the lock is held).
        mpp: MPP that replaces the file's own (the slide's ``project.mpp_column`` value).

    Returns:
        A report row (see `src.extraction.report.REPORT_COLUMNS`), plus ``mpp_source``
        (column, slide or override) for an extracted slide.
    """
    start = time.perf_counter()
    row: dict[str, Any] = {"slide": slide, "path": str(path) if path else "", "error": ""}
    choice = MppChoice(mpp, mpp_override)
    index = read_index(folder, slide, path, mpp=choice, verify=True)
    if index is None:
        lock = FileLock(lock_path(folder, slide))
        try:
            if not lock.acquire(blocking=wait):
                return {**row, "status": BUSY, "error": f"being extracted by {lock.holder()}"}
            remove_leftovers(list(leftovers))
            # another run may have completed it meanwhile
            index = read_index(folder, slide, path, mpp=choice, verify=True)
            if index is None:
                _extract(row, path, folder, settings, choice, threads, backend, thumbnails, start)
        except Exception as err:  # e.g. no lock file on a full disk: this slide fails, not the run
            _fail(row, err, folder)
        finally:
            lock.release()
        if index is None:
            row["seconds"] = round(time.perf_counter() - start, 3)
            return row
    row.update(status="skipped", grid_tiles=index.get("grid_tiles"), kept_tiles=index["num_tiles"])
    row.update(seconds=index.get("seconds"), mpp=index.get("mpp"), level=index.get("level"))
    row.update(backend=index.get("backend", ""))
    return row


def _extract(
    row: dict[str, Any],
    path: Path | None,
    folder: Path,
    settings: TileSettings,
    choice: MppChoice,
    threads: int,
    backend: str | None,
    thumbnails: bool,
    start: float,
) -> None:
    """Extract the slide of `row` (its lock held) and fill in the row; a failure fills in its reason."""
    slide = row["slide"]
    try:
        reader_cls = reader_class(backend)
        row.update(backend=backend_name(reader_cls))
        damage = shard_damage(folder, slide)  # a complete index whose tar does not hold what it says
        if damage is not None and (path is None or not Path(path).exists()):
            raise FileNotFoundError(_damaged_without_slide(folder, slide, path, damage))
        if damage is not None:
            log.warning("The shard of slide '%s' is damaged (%s): extracting it again", slide, damage)
        if path is None:
            raise FileNotFoundError(MISSING_FILE)
        if not reads_format(reader_cls.extensions, path):
            raise SlideError(unsupported_format(path, row["backend"]))
        fingerprint = slide_fingerprint(path) if Path(path).is_file() else None
        mpp, mpp_override = choice.mpp, choice.override
        with open_slide(path, mpp_override=mpp_override, backend=backend, mpp=mpp) as reader:
            row.update(mpp=reader.mpp, mpp_source=mpp_source(reader.mpp, reader.properties, mpp, mpp_override))
            grid, keep = tile_plan(reader, settings)  # the grid and Otsu mask every tile source uses
            row.update(level=grid.level, grid_tiles=len(grid))
            tissue = settings.tissue
            pause_after = int(os.environ.get(PAUSE_ENV, "0") or 0)

            def encode(tile: np.ndarray) -> bytes:
                return encode_tile(tile, settings.img_format, settings.jpeg_quality)

            with ShardWriter(folder, slide, settings.img_format) as writer:
                for image, loc_x, loc_y in iter_tiles(reader, grid, tissue, encode, threads=threads, keep=keep):
                    writer.add(image, loc_x, loc_y)
                    if pause_after and writer.tiles_written == pause_after:
                        _pause(writer, slide)
                if thumbnails:
                    write_thumbnail(thumbnail_path(folder, slide), draw_thumbnail(reader, grid, writer.locations))
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
                    full_extract_px=grid.full_extract_px,
                    backend=row["backend"],
                )
        row.update(status="done", kept_tiles=index["num_tiles"])
    except Exception as err:  # one bad slide must not stop the others
        _fail(row, err, folder)


def _fail(row: dict[str, Any], err: Exception, folder: Path) -> None:
    log.debug("Slide %s failed", row["slide"], exc_info=True)
    error = f"{type(err).__name__}: {err}"
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        error += f" (writing to {folder}: free disk space there, or use another project.shards_dir, and run again)"
    row.update(status="failed", error=error)


def _damaged_without_slide(folder: Path, slide: str, path: Path | None, damage: str) -> str:
    where = f"{path} does not exist" if path else "there is no file for it in the slides folder"
    return (
        f"The shard of slide '{slide}' is damaged ({damage}) and the slide cannot be extracted again: {where}. "
        f"Put the slide file back and run again, or delete {tar_path(folder, slide)} and "
        f"{index_path(folder, slide)} to do without this slide."
    )


def _pause(writer: ShardWriter, slide: str) -> None:
    """The tests' hook: flush what was written, say so (with our PID), and wait (to be killed)."""
    writer.flush()
    print(f"PAUSED {slide} after {writer.tiles_written} tiles (pid {os.getpid()})", file=sys.stderr, flush=True)
    seconds = float(os.environ.get(PAUSE_SECONDS_ENV, "600") or 600)
    release = os.environ.get(PAUSE_UNTIL_ENV)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (release and Path(release).exists()):
        time.sleep(0.05 if release else min(seconds, 1.0))


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
    (missing, corrupt, no MPP, a full disk) is recorded with its reason and the others continue.
    Work is spread over `workers` cores: several slides at once in worker processes, or, with fewer
    slides than workers, threads within each slide. Slides that another run is extracting are left
    for last, then waited for. The folder's ``extraction_report.csv`` is updated with this run's
    rows (a report that cannot be written is logged as an error; the shards are unaffected).

    Args:
        slides: Slide name -> slide file (see `src.slides.discover.find_slides`); None = no file.
        shards_root: Root of all shard folders.
        settings: Tile settings.
        workers: Cores to use (processes over slides, threads within a slide).
        mpp_override: MPP for the slides whose file records none (a file's own MPP wins).
        progress: Show a tqdm progress bar.
        backend: Slide reader: None = tiffslide, ``"openslide"``, or a dotted class path; passed
            by name to the worker processes.
        thumbnails: Write a thumbnail JPEG per slide with the kept tiles outlined.
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
        if read_index(folder, name, path, mpp=MppChoice(mpps.get(name), mpp_override), verify=True) is not None:
            rows.append(extract_slide(name, path, folder, settings, mpp_override, mpp=mpps.get(name)))  # "skipped"
        else:
            todo.append((name, path))
    bar = tqdm(total=len(slides), initial=len(rows), desc="extract", unit="slide", disable=not progress)
    processes = max(1, min(workers, len(todo)))
    threads = max(1, workers // processes)
    found = find_leftovers(folder)
    thumbs = find_leftovers(folder / THUMBNAIL_DIR)

    def job(name: str, path: Path | None, wait: bool) -> tuple:
        leftovers = [*found.get(f"{name}.tar", []), *found.get(f"{name}{INDEX_SUFFIX}", [])]
        leftovers += found.get(f"{name}{VERIFIED_SUFFIX}", [])
        leftovers += thumbs.get(thumbnail_path(folder, name).name, [])
        return (
            name,
            path,
            folder,
            settings,
            mpp_override,
            threads,
            backend,
            thumbnails,
            wait,
            leftovers,
            mpps.get(name),
        )

    pool = None
    if processes > 1:
        # forkserver, not fork: the caller may hold threads (torch, OpenCV, zarr's event loop) that a
        # forked child would inherit half-alive and deadlock on. Workers exit when we die (kill -9).
        context = multiprocessing.get_context("forkserver")
        pool = ProcessPoolExecutor(processes, context, initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        busy = []
        for row in _run(pool, [job(name, path, wait=False) for name, path in todo]):
            if row["status"] == BUSY:
                busy.append(row)
            else:
                rows.append(row)
                _advance(bar, rows)
        if busy:
            log.info("Waiting for %d slide(s) that another run is extracting:", len(busy))
            for row in busy:
                log.info("  %s: %s", row["slide"], row["error"])
            paths = dict(todo)
            for row in _run(pool, [job(row["slide"], paths[row["slide"]], wait=True) for row in busy]):
                rows.append(row)
                _advance(bar, rows)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    order = {name: i for i, name in enumerate(slides)}
    report = report_frame(rows)
    report = report.sort_values("slide", key=lambda s: s.map(order)).reset_index(drop=True)
    try:
        update_report(folder, report)
    except OSError as err:
        log.error("Could not update the extraction report in %s (%s); the shards are not affected", folder, err)
    return report


def _run(pool: ProcessPoolExecutor | None, jobs: list[tuple]) -> Iterator[dict[str, Any]]:
    """`extract_slide` on each job, in this process (no pool) or in the pool's workers, as they finish."""
    if pool is None:
        for job in jobs:
            yield extract_slide(*job)
        return
    for future in as_completed([pool.submit(extract_slide, *job) for job in jobs]):
        yield future.result()


def _advance(bar: tqdm, rows: list[dict[str, Any]]) -> None:
    row = rows[-1]
    bar.set_postfix_str(f"{row['slide']}: {row['status']}", refresh=False)
    bar.update(1)
