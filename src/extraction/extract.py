"""Extract tissue tiles from slides into per-slide shards, resuming completed slides."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from src.extraction.settings import TileSettings
from src.extraction.shards import ShardWriter, read_index, shard_dir
from src.slides.grid import tile_grid
from src.slides.reader import open_slide
from src.slides.tiles import iter_tiles

log = logging.getLogger(__name__)

REPORT_COLUMNS = ["slide", "status", "grid_tiles", "kept_tiles", "seconds", "error"]


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
    path: Path,
    folder: Path,
    settings: TileSettings,
    mpp_override: float | None = None,
) -> dict[str, Any]:
    """Extract one slide into `folder`; never raises for a bad slide.

    Returns:
        A report row: slide, status (done|skipped|failed), grid_tiles, kept_tiles, seconds,
        error.
    """
    start = time.perf_counter()
    row: dict[str, Any] = {"slide": slide, "grid_tiles": None, "kept_tiles": None}
    index = read_index(folder, slide)
    if index is not None:
        row.update(status="skipped", error="")
        row.update(grid_tiles=index.get("grid_tiles"), kept_tiles=index["num_tiles"])
    else:
        try:
            with open_slide(path, mpp_override=mpp_override) as reader:
                grid = tile_grid(
                    reader,
                    settings.tile_px,
                    settings.tile_um,
                    stride_div=settings.stride_div,
                    use_edge_tiles=settings.use_edge_tiles,
                )
                with ShardWriter(folder, slide, settings.img_format) as writer:
                    for tile, loc_x, loc_y in iter_tiles(reader, grid, settings.tissue_filter()):
                        image = encode_tile(tile, settings.img_format, settings.jpeg_quality)
                        writer.add(image, loc_x, loc_y)
                    index = writer.finish(settings.to_dict(), grid_tiles=len(grid))
            row.update(status="done", error="", grid_tiles=len(grid))
            row["kept_tiles"] = index["num_tiles"]
        except Exception as err:  # one bad slide must not stop the others
            log.debug("Slide %s failed", slide, exc_info=True)
            row.update(status="failed", error=f"{type(err).__name__}: {err}")
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def extract_slides(
    slides: dict[str, Path],
    shards_root: Path,
    settings: TileSettings,
    workers: int = 1,
    mpp_override: float | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Extract every slide's tissue tiles into ``shards_root / settings.key``.

    Slides whose index is complete are skipped; a failing slide (missing, corrupt, no MPP)
    is recorded with its reason and the others continue. A report CSV of the run is written
    into the shard folder.

    Args:
        slides: Slide name -> slide file (see `src.slides.discover.find_slides`).
        shards_root: Root of all shard folders.
        settings: Tile settings.
        workers: Slides extracted in parallel (processes); 1 = in this process.
        mpp_override: MPP for every slide instead of the files' own.
        progress: Show a tqdm progress bar.

    Returns:
        One row per slide: slide, status (done|skipped|failed), grid_tiles, kept_tiles,
        seconds, error.
    """
    folder = shard_dir(shards_root, settings)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(slides), desc="extract", unit="slide", disable=not progress)
    jobs = [(name, Path(path), folder, settings, mpp_override) for name, path in slides.items()]
    if workers <= 1:
        for job in jobs:
            rows.append(extract_slide(*job))
            _advance(bar, rows)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(extract_slide, *job) for job in jobs]
            for future in as_completed(futures):
                rows.append(future.result())
                _advance(bar, rows)
    bar.close()
    order = {name: i for i, name in enumerate(slides)}
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report = report.sort_values("slide", key=lambda s: s.map(order)).reset_index(drop=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    report.to_csv(folder / f"extraction_report_{stamp}.csv", index=False)
    return report


def _advance(bar: tqdm, rows: list[dict[str, Any]]) -> None:
    row = rows[-1]
    bar.set_postfix_str(f"{row['slide']}: {row['status']}", refresh=False)
    bar.update(1)


def summarize(report: pd.DataFrame) -> str:
    """Return a short human summary of an extraction report, failures listed."""
    counts = report["status"].value_counts().to_dict()
    kept = int(pd.to_numeric(report["kept_tiles"], errors="coerce").fillna(0).sum())
    lines = [
        (
            f"{len(report)} slides: {counts.get('done', 0)} done, "
            f"{counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed; "
            f"{kept} tiles in total"
        )
    ]
    for row in report[report["status"] == "failed"].itertuples():
        lines.append(f"  FAILED {row.slide}: {row.error}")
    return "\n".join(lines)
