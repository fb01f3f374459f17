"""Workers (processes over slides, threads within one) give identical shards; report CSV and thumbnails."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from src.demo.generate import DemoProject
from src.extraction.extract import extract_slides
from src.extraction.report import REPORT_COLUMNS, REPORT_NAME, report_frame, summarize, thumbnail_path
from src.extraction.shards import read_index, shard_dir, tar_path
from src.slides.reader import open_slide
from src.slides.tile_settings import TileSettings

SETTINGS = TileSettings(tile_px=64, tile_um=64)


def _shards(folder: Path, slides: list[str]) -> dict[str, bytes]:
    return {slide: tar_path(folder, slide).read_bytes() for slide in slides}


def test_two_workers_give_the_same_shards_as_one(demo_project: DemoProject, tmp_path: Path) -> None:
    slides = {p.stem: p for p in sorted(demo_project.slides_dir.glob("*.svs"))[:3]}
    serial = extract_slides(slides, tmp_path / "one", SETTINGS, workers=1, progress=False)
    parallel = extract_slides(slides, tmp_path / "two", SETTINGS, workers=2, progress=False)  # 2 processes
    assert parallel["status"].tolist() == ["done"] * 3
    assert parallel["kept_tiles"].tolist() == serial["kept_tiles"].tolist()
    one, two = shard_dir(tmp_path / "one", SETTINGS), shard_dir(tmp_path / "two", SETTINGS)
    assert _shards(two, list(slides)) == _shards(one, list(slides))
    # a single slide with two workers is read by two threads: same bytes, same order
    name = next(iter(slides))
    threaded = extract_slides({name: slides[name]}, tmp_path / "threads", SETTINGS, workers=2, progress=False)
    assert threaded["status"].tolist() == ["done"]
    assert _shards(shard_dir(tmp_path / "threads", SETTINGS), [name]) == _shards(one, [name])


def test_report_csv_and_thumbnail_outlines(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slides = {**two_slides, "gone": None}
    report = extract_slides(slides, tmp_path, SETTINGS, progress=False)
    folder = shard_dir(tmp_path, SETTINGS)
    csv = pd.read_csv(folder / REPORT_NAME)
    csv["error"] = csv["error"].fillna("")
    assert list(csv.columns) == REPORT_COLUMNS
    assert csv["slide"].tolist() == list(slides)
    assert csv["status"].tolist() == ["done", "done", "failed"]
    assert csv["grid_tiles"].iloc[:2].astype(int).tolist() == [36, 36]
    assert csv["kept_tiles"].iloc[:2].astype(int).tolist() == report["kept_tiles"].iloc[:2].tolist()
    assert (csv["seconds"].iloc[:2] > 0).all() and csv["error"].tolist()[:2] == ["", ""]
    assert csv["mpp"].iloc[:2].tolist() == [0.5, 0.5] and csv[["grid_tiles", "kept_tiles"]].iloc[2].isna().all()
    assert "not found" in csv["error"].iloc[2]
    # A later run adds its rows and keeps the others.
    extract_slides(dict(list(two_slides.items())[:1]), tmp_path, SETTINGS, progress=False)
    again = pd.read_csv(folder / REPORT_NAME, keep_default_na=False)
    assert sorted(again["slide"]) == sorted(slides) and "skipped" in set(again["status"])

    slide, path = next(iter(two_slides.items()))
    image = cv2.cvtColor(cv2.imread(str(thumbnail_path(folder, slide))), cv2.COLOR_BGR2RGB)
    assert not thumbnail_path(folder, "gone").exists()
    assert image.shape == (768 + 24, 768, 3)  # slides up to 1024 px keep their size; a caption below
    thumb, caption = image[:768], image[768:]
    assert (caption < 128).any() and (caption == 255).mean() > 0.8  # dark text on white
    with open_slide(path) as reader:
        plain = reader.get_thumbnail(1024)
    index = read_index(folder, slide)
    green = (thumb[:, :, 1].astype(int) - thumb[:, :, [0, 2]].max(axis=2)) > 20
    for loc_x, loc_y in index["locations"]:  # every kept tile has its outline drawn
        assert green[loc_y - 64 : loc_y + 64, loc_x - 64].mean() > 0.9
    kept = {tuple(loc) for loc in index["locations"]}
    dropped = [(x, y) for x in range(64, 768, 128) for y in range(64, 768, 128) if (x, y) not in kept]
    assert dropped  # and the dropped ones are untouched
    for loc_x, loc_y in dropped:  # the slide's own pixels, up to the JPEG's small error
        assert not green[loc_y - 60 : loc_y + 60, loc_x - 60 : loc_x + 60].any()
        shown = thumb[loc_y - 60 : loc_y + 60, loc_x - 60 : loc_x + 60].astype(int)
        error = np.abs(shown - plain[loc_y - 60 : loc_y + 60, loc_x - 60 : loc_x + 60])
        assert error.mean() < 2 and np.percentile(error, 99) < 12


def test_summary_tells_extracted_from_skipped(demo_project: DemoProject, tmp_path: Path) -> None:
    slides = {p.stem: p for p in sorted(demo_project.slides_dir.glob("*.svs"))[:3]}
    first = extract_slides(dict(list(slides.items())[:2]), tmp_path, SETTINGS, progress=False)
    report = extract_slides({**slides, "gone": None}, tmp_path, SETTINGS, progress=False)
    assert report["status"].tolist() == ["skipped", "skipped", "done", "failed"]
    skipped_tiles = int(first["kept_tiles"].sum())
    new_tiles = int(report["kept_tiles"].iloc[2])
    new_seconds = float(report["seconds"].iloc[2])
    assert (report["seconds"].iloc[:2] > 0).all()  # the skipped rows keep their first extraction's seconds...
    lines = summarize(report).splitlines()
    assert lines[0] == (  # ...which the summary does not count as this run's
        f"4 slides: 1 extracted ({new_tiles:,} tiles in {new_seconds:.1f} s), "
        f"2 skipped (already complete, {skipped_tiles:,} tiles), 1 failed"
    )
    assert lines[1].startswith("  FAILED gone: FileNotFoundError: Slide file not found") and len(lines) == 2
    big = report_frame(
        [
            {"slide": "a", "status": "done", "kept_tiles": 4000, "seconds": 30},
            {"slide": "b", "status": "done", "kept_tiles": 210, "seconds": 30},
            {"slide": "c", "status": "skipped", "kept_tiles": 810, "seconds": 500},
        ]
    )
    assert summarize(big, seconds=38.2) == (
        "3 slides: 2 extracted (4,210 tiles in 38 s), 1 skipped (already complete, 810 tiles), 0 failed"
    )


@pytest.mark.parametrize(("tile_px", "tile_um"), [(64, 64), (299, 302)])  # the demo's tiles, Slideflow's
def test_a_thumbnail_is_a_jpeg_a_fraction_of_its_shard(shared_slides: Path, tmp_path: Path, tile_px, tile_um) -> None:
    slide = shared_slides / "cmu-1-small-region.svs"  # a small real slide: PNG thumbnails were 1.3-3.2x its shard
    settings = TileSettings(tile_px=tile_px, tile_um=tile_um)
    folder = shard_dir(tmp_path, settings)
    old = thumbnail_path(folder, "cmu").with_suffix(".png")
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an earlier extraction's thumbnail")
    extract_slides({"cmu": slide}, tmp_path, settings, progress=False)
    path = thumbnail_path(folder, "cmu")
    data = path.read_bytes()
    assert path.suffix == ".jpg" and data[:3] == b"\xff\xd8\xff" and not old.exists()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    tiles_high = 2967 / read_index(folder, "cmu")["full_extract_px"]  # 23 small tiles, or 5 large ones
    assert image.shape[0] - 24 == min(1024, max(512, round(128 * tiles_high)))  # 128 px a tile, 512-1024 px
    png = cv2.imencode(".png", image)[1]
    assert len(data) < 0.25 * tar_path(folder, "cmu").stat().st_size and len(data) < len(png) / 4
