"""What an extraction leaves for people: the per-slide report CSV, thumbnails, and a summary.

In each shard folder:

* ``extraction_report.csv``: one row per slide ever extracted there (latest attempt wins):
  slide, path, status (done|skipped|failed), grid_tiles, kept_tiles, seconds, error, mpp, level,
  backend (the slide reader, e.g. ``tiffslide``);
* ``thumbnails/{slide}.png``: the slide with every kept tile outlined in green.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from src.slides.grid import TileGrid
from src.slides.reader import SlideReader

REPORT_NAME = "extraction_report.csv"
REPORT_COLUMNS = ["slide", "path", "status", "grid_tiles", "kept_tiles", "seconds", "error", "mpp", "level", "backend"]
INT_COLUMNS = ("grid_tiles", "kept_tiles", "level")
THUMBNAIL_DIR = "thumbnails"
THUMBNAIL_PX = 1024
OUTLINE_RGB = (0, 160, 0)
CAPTION_PX = 24


def thumbnail_path(shard_folder: str | Path, slide: str) -> Path:
    """Where a slide's thumbnail goes: ``{shard_folder}/thumbnails/{slide}.png``."""
    return Path(shard_folder) / THUMBNAIL_DIR / f"{slide}.png"


def draw_thumbnail(
    reader: SlideReader, grid: TileGrid, kept_locs: Sequence[Sequence[int]], max_px: int = THUMBNAIL_PX
) -> np.ndarray:
    """Render the slide with its kept tiles tinted and outlined, and a caption strip below it.

    Args:
        reader: The open slide (read through `get_thumbnail`: a low level, streamed).
        grid: The slide's tile grid.
        kept_locs: Tile centres (level-0 px) of the kept tiles.
        max_px: Longest side of the thumbnail.

    Returns:
        An RGB uint8 image: the slide's thumbnail (longest side `max_px`), then a 24 px caption
        ``"{slide}: {kept} of {grid} tiles kept"``.
    """
    image = reader.get_thumbnail(max_px)
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


def write_png_atomic(path: Path, image: np.ndarray) -> None:
    """Write an RGB image as PNG through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"cv2 could not encode {path}")
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(buffer.tobytes())
    os.replace(tmp, path)


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


def update_report(shard_folder: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Merge this run's rows into the folder's report CSV (same slide: the new row wins).

    Returns:
        The whole report, written atomically to ``{shard_folder}/extraction_report.csv``.
    """
    path = Path(shard_folder) / REPORT_NAME
    try:
        old = report_frame(pd.read_csv(path, dtype={"slide": str}, keep_default_na=False, na_values=[""]))
    except (OSError, ValueError):
        old = report_frame([])
    old = old[~old["slide"].isin(set(rows["slide"]))]
    frames = [frame for frame in (old, report_frame(rows)) if len(frame)]
    merged = pd.concat(frames, ignore_index=True) if frames else report_frame(rows)
    tmp = path.with_name(path.name + ".partial")
    merged.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return merged


def summarize(report: pd.DataFrame) -> str:
    """Return a short human summary of an extraction report, failures listed with their reason."""
    counts = report["status"].value_counts().to_dict()
    kept = int(pd.to_numeric(report["kept_tiles"], errors="coerce").fillna(0).sum())
    done = report[report["status"] == "done"]
    seconds = float(pd.to_numeric(done["seconds"], errors="coerce").fillna(0).sum())
    done_tiles = int(pd.to_numeric(done["kept_tiles"], errors="coerce").fillna(0).sum())
    rate = f" ({done_tiles / seconds:.0f} tiles/s per slide-worker)" if seconds > 0 else ""
    lines = [
        (
            f"{len(report)} slides: {counts.get('done', 0)} done, "
            f"{counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed; "
            f"{kept} tiles in total{rate}"
        )
    ]
    for row in report[report["status"] == "failed"].itertuples():
        lines.append(f"  FAILED {row.slide}: {row.error}")
    return "\n".join(lines)
