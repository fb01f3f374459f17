"""What an extraction leaves for people: the per-slide report CSV, thumbnails, and a summary.

In each shard folder:

* ``extraction_report.csv``: one row per slide ever extracted there (latest attempt wins):
  slide, path, status (done|skipped|failed), grid_tiles, kept_tiles, seconds, error, mpp, level,
  backend (the slide reader, e.g. ``tiffslide``);
* ``thumbnails/{slide}.jpg``: the slide with every kept tile outlined in green (JPEG, quality 85: a
  fraction of the PNG's size, which was often larger than the slide's shard).

Runs on the same folder update the report one at a time (under ``extraction_report.csv.lock``), each
merging its rows into the latest file, so no run's rows are lost.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from src.infra.files import write_bytes_atomic
from src.infra.locks import LOCK_SUFFIX, FileLock
from src.infra.temp_files import find_leftovers, remove_leftovers
from src.slides.grid import TileGrid
from src.slides.reader import SlideReader

REPORT_NAME = "extraction_report.csv"
REPORT_COLUMNS = ["slide", "path", "status", "grid_tiles", "kept_tiles", "seconds", "error", "mpp", "level", "backend"]
INT_COLUMNS = ("grid_tiles", "kept_tiles", "level")
THUMBNAIL_DIR = "thumbnails"
THUMBNAIL_SUFFIX = ".jpg"
THUMBNAIL_QUALITY = 85
OLD_THUMBNAIL_SUFFIX = ".png"  # what extractions before JPEG thumbnails wrote
THUMBNAIL_PX = 1024  # longest side at most
MIN_THUMBNAIL_PX = 512  # ... and at least (unless the slide is smaller)
TILE_THUMBNAIL_PX = 128  # ... and no more than this per tile side: a slide of a few large tiles needs no more
OUTLINE_RGB = (0, 160, 0)
CAPTION_PX = 24


def thumbnail_path(shard_folder: str | Path, slide: str) -> Path:
    """Where a slide's thumbnail goes: ``{shard_folder}/thumbnails/{slide}.jpg``."""
    return Path(shard_folder) / THUMBNAIL_DIR / f"{slide}{THUMBNAIL_SUFFIX}"


def thumbnail_px(reader: SlideReader, grid: TileGrid) -> int:
    """The thumbnail's longest side: `TILE_THUMBNAIL_PX` per tile, within `MIN_THUMBNAIL_PX`-`THUMBNAIL_PX`."""
    tiles = max(reader.dimensions) / max(grid.full_extract_px, 1)
    return int(np.clip(round(tiles * TILE_THUMBNAIL_PX), MIN_THUMBNAIL_PX, THUMBNAIL_PX))


def draw_thumbnail(
    reader: SlideReader, grid: TileGrid, kept_locs: Sequence[Sequence[int]], max_px: int | None = None
) -> np.ndarray:
    """Render the slide with its kept tiles tinted and outlined, and a caption strip below it.

    Args:
        reader: The open slide (read through `get_thumbnail`: a low level, streamed).
        grid: The slide's tile grid.
        kept_locs: Tile centres (level-0 px) of the kept tiles.
        max_px: Longest side of the thumbnail (None: `thumbnail_px`; never more than the slide's own).

    Returns:
        An RGB uint8 image: the slide's thumbnail (longest side `max_px`), then a 24 px caption
        ``"{slide}: {kept} of {grid} tiles kept"``.
    """
    image = reader.get_thumbnail(thumbnail_px(reader, grid) if max_px is None else max_px)
    scale = image.shape[1] / reader.dimensions[0]
    locs = np.asarray(kept_locs, np.float64).reshape(-1, 2)
    half = grid.full_extract_px / 2
    boxes = np.round(np.concatenate([locs - half, locs + half], axis=1) * scale).astype(int)
    tint = image.copy()
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(tint, (x0, y0), (x1 - 1, y1 - 1), OUTLINE_RGB, -1)
    image = cv2.addWeighted(image, 0.8, tint, 0.2, 0)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), OUTLINE_RGB, 1)
    caption = np.full((CAPTION_PX, image.shape[1], 3), 255, np.uint8)
    text = f"{reader.name}: {len(locs)} of {len(grid)} tiles kept"
    cv2.putText(caption, text, (4, CAPTION_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([image, caption], axis=0)


def write_thumbnail(path: Path, image: np.ndarray, quality: int = THUMBNAIL_QUALITY) -> None:
    """Write an RGB thumbnail as JPEG through a unique temporary name (deleted on failure).

    The slide's PNG thumbnail of an earlier extraction, if any, is deleted: it showed the old tiles.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"cv2 could not encode {path}")
    write_bytes_atomic(path, buffer.tobytes(), fsync=False)
    path.with_suffix(OLD_THUMBNAIL_SUFFIX).unlink(missing_ok=True)


def report_frame(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Report rows as a table with `REPORT_COLUMNS`; counts as nullable integers, errors as text."""
    frame = pd.DataFrame(rows).reindex(columns=REPORT_COLUMNS)
    for column in INT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in ("seconds", "mpp"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in ("slide", "path", "status", "error", "backend"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def read_report(shard_folder: str | Path) -> pd.DataFrame:
    """The shard folder's report (every run's and every part's rows); empty when it has none."""
    try:
        return report_frame(
            pd.read_csv(Path(shard_folder) / REPORT_NAME, dtype={"slide": str}, keep_default_na=False, na_values=[""])
        )
    except (OSError, ValueError):
        return report_frame([])


def update_report(shard_folder: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Merge this run's rows into the folder's report CSV (same slide: the new row wins).

    Holds the report's lock while reading, merging and writing, so concurrent runs do not lose rows.

    Returns:
        The whole report, written atomically to ``{shard_folder}/extraction_report.csv``.

    Raises:
        OSError: The report could not be written (e.g. a full disk); the old report is left as it was.
    """
    path = Path(shard_folder) / REPORT_NAME
    with FileLock(path.with_name(path.name + LOCK_SUFFIX)):
        remove_leftovers(find_leftovers(path.parent).get(path.name, []))
        old = read_report(path.parent)
        old = old[~old["slide"].isin(set(rows["slide"]))]
        frames = [frame for frame in (old, report_frame(rows)) if len(frame)]
        merged = pd.concat(frames, ignore_index=True) if frames else report_frame(rows)
        text = io.StringIO()
        merged.to_csv(text, index=False)
        write_bytes_atomic(path, text.getvalue().encode(), fsync=False)
    return merged


def summarize(report: pd.DataFrame, seconds: float | None = None) -> str:
    """A short human summary of an extraction report: extracted and skipped apart, failures with their reason.

    Example: ``12 slides: 10 extracted (4,210 tiles in 38 s), 2 skipped (already complete, 810 tiles),
    0 failed``, then one ``  FAILED {slide}: {reason}`` line per failed slide.

    Args:
        report: This run's rows (see `REPORT_COLUMNS`).
        seconds: Wall-clock seconds of the run; None: the sum of the extracted slides' seconds.
    """

    def tiles(rows: pd.DataFrame) -> int:
        return int(pd.to_numeric(rows["kept_tiles"], errors="coerce").fillna(0).sum())

    done = report[report["status"] == "done"]
    skipped = report[report["status"] == "skipped"]
    failed = report[report["status"] == "failed"]
    if seconds is None:
        seconds = float(pd.to_numeric(done["seconds"], errors="coerce").fillna(0).sum())
    duration = f"{seconds:.1f}" if seconds < 10 else f"{seconds:,.0f}"
    lines = [
        f"{len(report)} slides: {len(done)} extracted ({tiles(done):,} tiles in {duration} s), "
        f"{len(skipped)} skipped (already complete, {tiles(skipped):,} tiles), {len(failed)} failed"
    ]
    for row in failed.itertuples():
        lines.append(f"  FAILED {row.slide}: {row.error}")
    return "\n".join(lines)
