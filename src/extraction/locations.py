"""Tile locations of a slide without a shard: extraction's own grid and tissue decisions, cached per slide.

`src.slides.tiling.tile_plan` is the one place that lays the tile grid and the Otsu mask for tile settings (extraction,
live prediction tiles and this cache all call it); :func:`kept_locations` applies the grayspace / whitespace
filters exactly as extraction does (:func:`~src.slides.tiles.iter_tiles`), without encoding anything. So a
slide's cached locations are its shard's locations, tile for tile, for the same ``tiles`` settings.

The cache mirrors the shard folders: ``{root}/{settings.key}/{slide}.locations.json`` holds the kept tile
centres, how to read them (level, ``extract_px``) and, as a shard index does, ``"status": "complete"``, the
slide file's fingerprint and the MPP used. It is written through a unique temporary file and renamed
(`src.infra.files`) under the slide's lock, so a ``kill -9`` at any point leaves either nothing or a
``.partial`` file that no reader takes as complete (and that the next run holding the lock deletes).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.extraction.shards import same_slide_file, slide_fingerprint
from src.infra.files import atomic_path
from src.infra.locks import FileLock
from src.infra.temp_files import find_leftovers, remove_leftovers
from src.slides.grid import TileGrid
from src.slides.mpp import MppChoice, mpp_source
from src.slides.reader import SlideReader, backend_name, open_slide, reader_class
from src.slides.tile_settings import TileSettings
from src.slides.tiles import iter_tiles
from src.slides.tiling import tile_plan

log = logging.getLogger(__name__)

LOCATIONS_SUFFIX = ".locations.json"
# Test hook: stop after the cache's temporary file is written, before it is renamed (a test kills us there).
PAUSE_ENV = "SRC_LOCATIONS_PAUSE"
PAUSE_SECONDS_ENV = "SRC_LOCATIONS_PAUSE_SECONDS"


def kept_locations(
    reader: SlideReader, grid: TileGrid, keep: np.ndarray, settings: TileSettings, threads: int = 1
) -> np.ndarray:
    """``(n, 2)`` centres of the tiles extraction keeps (grid order): QC mask, then the per-tile filters."""
    tiles = iter_tiles(reader, grid, settings.tissue, _nothing, threads=threads, keep=keep)
    locs = [(x, y) for _, x, y in tiles]
    return np.asarray(locs, np.int64).reshape(-1, 2)


def _nothing(tile: np.ndarray) -> None:
    return None


def locations_dir(root: str | Path, settings: TileSettings) -> Path:
    """The cache folder of these settings: ``root / settings.key`` (as `src.extraction.shards.shard_dir`)."""
    return Path(root) / settings.key


def locations_path(folder: str | Path, slide: str) -> Path:
    """The cache file of one slide."""
    return Path(folder) / f"{slide}{LOCATIONS_SUFFIX}"


def read_locations(
    folder: str | Path, slide: str, slide_path: str | Path | None = None, mpp: MppChoice | None = None
) -> dict[str, Any] | None:
    """A slide's complete location cache, or None (missing, unfinished, stale slide file or MPP).

    Args:
        folder: The settings' cache folder.
        slide: The slide name.
        slide_path: The slide file to check the cache's fingerprint against (None skips the check).
        mpp: This run's MPP choice for the slide (None skips the check).
    """
    try:
        entry = json.loads(locations_path(folder, slide).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("status") != "complete":
        return None
    if len(entry.get("locations", ())) != entry.get("num_tiles"):
        return None
    if (
        slide_path is not None
        and Path(slide_path).exists()
        and not same_slide_file(entry.get("slide_file"), slide_path)
    ):
        return None
    if mpp is not None and not mpp.matches(entry):
        return None
    return entry


def cache_slide(
    slide: str,
    path: Path,
    folder: Path,
    settings: TileSettings,
    mpp_override: float | None = None,
    backend: str | None = None,
    mpp: float | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Compute and cache one slide's tile locations unless a complete cache is there; returns the entry.

    Holds the slide's lock (``{slide}.lock`` in ``folder``) meanwhile, so concurrent runs (or DDP ranks)
    compute a slide once; the temporary files killed runs left are deleted once the lock is held.

    Raises:
        SlideError: the slide cannot be opened or read (naming it).
    """
    choice = MppChoice(mpp, mpp_override)
    entry = read_locations(folder, slide, path, choice)
    if entry is not None:
        return entry
    folder.mkdir(parents=True, exist_ok=True)
    final = locations_path(folder, slide)
    with FileLock(folder / f"{slide}.lock"):
        remove_leftovers(find_leftovers(folder).get(final.name, []))
        entry = read_locations(folder, slide, path, choice)  # another run may have written it meanwhile
        if entry is not None:
            return entry
        start = time.perf_counter()
        fingerprint = slide_fingerprint(path)
        with open_slide(path, mpp_override=mpp_override, backend=backend, mpp=mpp) as reader:
            grid, keep = tile_plan(reader, settings)
            locs = kept_locations(reader, grid, keep, settings, threads)
            entry = {
                "slide": slide,
                "num_tiles": len(locs),
                "locations": locs.tolist(),
                "settings": settings.to_dict(),
                "status": "complete",
                "grid_tiles": len(grid),
                "slide_file": fingerprint,
                "mpp": reader.mpp,
                "mpp_source": mpp_source(reader.mpp, reader.properties, mpp, mpp_override),
                "level": grid.level,
                "extract_px": grid.extract_px,
                "full_extract_px": grid.full_extract_px,
                "backend": backend_name(reader_class(backend)),
                "seconds": round(time.perf_counter() - start, 3),
            }
        _write(final, entry)
    return entry


def _write(final: Path, entry: dict[str, Any]) -> None:
    """Write the entry through a temporary file, fsync and rename (the test hook pauses before the rename)."""
    with atomic_path(final) as tmp:  # fsynced after the block, before the rename
        tmp.write_bytes(json.dumps(entry).encode())
        if os.environ.get(PAUSE_ENV):
            print(f"PAUSED {entry['slide']} locations (pid {os.getpid()})", file=sys.stderr, flush=True)
            time.sleep(float(os.environ.get(PAUSE_SECONDS_ENV, "600") or 600))


def cache_slides(
    slides: Mapping[str, Path | None],
    root: Path,
    settings: TileSettings,
    workers: int = 1,
    mpp_override: float | None = None,
    backend: str | None = None,
    mpp_by_slide: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Cache the tile locations of every slide (``workers`` threads read each slide's tiles).

    A failing slide (missing, corrupt, no MPP) is recorded with its reason and the others continue. Progress
    goes to the log (the console and the run's log file), as for feature bags: how many slides are to
    compute, then one line per slide computed (``Tile locations 3/122: <slide> (412 tiles, 0.8 s; 2 s so far)``).

    Returns:
        One row per slide: slide, status (``cached`` | ``done`` | ``failed``), kept_tiles, error.
    """
    folder = locations_dir(root, settings)
    mpps = dict(mpp_by_slide or {})
    entries = {
        slide: read_locations(folder, slide, path, MppChoice(mpps.get(slide), mpp_override)) if path else None
        for slide, path in slides.items()
    }
    todo = [slide for slide, entry in entries.items() if entry is None]
    if todo:
        log.info("Tile locations in %s: %d of %d slide(s) to compute", folder, len(todo), len(slides))
    start, number = time.perf_counter(), 0
    rows = []
    for slide, path in slides.items():
        row: dict[str, Any] = {"slide": slide, "status": "cached", "kept_tiles": None, "error": ""}
        began = time.perf_counter()
        try:
            if path is None:
                raise FileNotFoundError("Slide file not found: no file for this slide in the slides folder")
            entry = entries[slide]
            if entry is None:
                entry = cache_slide(
                    slide, Path(path), folder, settings, mpp_override, backend, mpps.get(slide), workers
                )
                row["status"] = "done"
            row["kept_tiles"] = entry["num_tiles"]
        except Exception as err:  # one bad slide must not stop the others
            log.debug("Slide %s failed", slide, exc_info=True)
            row.update(status="failed", error=f"{type(err).__name__}: {err}")
        rows.append(row)
        if entries[slide] is None:  # computed now, or failed: one line each
            done = f"{row['kept_tiles']} tiles" if row["status"] != "failed" else f"FAILED: {row['error']}"
            number, now = number + 1, time.perf_counter()
            log.info(
                "Tile locations %d/%d: %s (%s, %.1f s; %.0f s so far)",
                number, len(todo), slide, done, now - began, now - start,
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["slide", "status", "kept_tiles", "error"])
