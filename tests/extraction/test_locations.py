"""The location cache of ``dataset=wsi``: exactly the shard's tile locations, pixels within JPEG error, atomic."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.sources.wsi import SlideTileDataset
from src.data.tiles import TileDataset, TileIndex, decode_tile
from src.extraction.extract import extract_slides
from src.extraction.locations import cache_slides, locations_dir, locations_path, read_locations
from src.extraction.shards import read_index, shard_dir
from src.slides.mpp import MppChoice
from src.slides.tile_settings import TileSettings
from src.slides.tiling import encode_tile
from tests.conftest import SHARED_DATA

CMU1 = SHARED_DATA / "slides" / "cmu-1-small-region.svs"


def same_as_shards(slides: dict[str, Path], tmp_path: Path, settings: TileSettings) -> list[dict]:
    """Extract shards and cache locations of ``slides``; assert the locations are equal; return the caches."""
    report = extract_slides(slides, tmp_path / "shards", settings, progress=False, thumbnails=False)
    assert (report.status == "done").all(), report.error.tolist()
    rows = cache_slides(slides, tmp_path / "locations", settings)
    assert (rows.status == "done").all(), rows.error.tolist()
    entries = []
    for slide in slides:
        index = read_index(shard_dir(tmp_path / "shards", settings), slide)
        entry = read_locations(locations_dir(tmp_path / "locations", settings), slide)
        assert entry["locations"] == index["locations"], slide
        assert (entry["num_tiles"], entry["grid_tiles"], entry["level"]) == (
            index["num_tiles"],
            index["grid_tiles"],
            index["level"],
        )
        entries.append(entry)
    return entries


def assert_pixels_within_jpeg_error(slides: dict[str, Path], entries: list[dict], tmp_path: Path, settings) -> None:
    """Live tiles, once encoded as the shard encodes them, are the shard's tiles."""
    live = SlideTileDataset(list(slides.values()), entries, np.zeros((len(slides), 1)))
    stored = TileDataset(TileIndex.from_shards(shard_dir(tmp_path / "shards", settings), list(slides)), live.targets)
    assert len(live) == len(stored) > 0
    for tile in np.linspace(0, len(live) - 1, min(len(live), 16)).round().astype(int):
        image = live.read_image(int(tile))
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        again = decode_tile(encode_tile(hwc, settings.img_format, settings.jpeg_quality))
        torch.testing.assert_close(again, stored.read_image(int(tile)))


@pytest.mark.skipif(not CMU1.is_file(), reason=f"real test slide not present ({CMU1}; see ../shared/data/README.md)")
def test_cmu1_locations_and_pixels_equal_its_shard(tmp_path: Path) -> None:
    settings = TileSettings(tile_px=128, tile_um=128)
    slides = {"cmu-1-small-region": CMU1}
    entries = same_as_shards(slides, tmp_path, settings)
    assert 0 < entries[0]["num_tiles"] < entries[0]["grid_tiles"]  # the filters dropped background tiles
    assert_pixels_within_jpeg_error(slides, entries, tmp_path, settings)


def test_demo_locations_equal_their_shards(tiny_cfg, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = tiny_cfg()
    instantiate(cfg.project.demo).ensure()
    paths = sorted(Path(cfg.project.slides_dir).glob("*.svs"))[:4]
    settings = TileSettings.from_config(cfg.tiles)
    slides = {p.stem: p for p in paths}
    entries = same_as_shards(slides, tmp_path, settings)
    assert_pixels_within_jpeg_error(slides, entries, tmp_path, settings)


def test_a_cache_is_used_only_when_complete_and_current(tiny_cfg, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = tiny_cfg()
    instantiate(cfg.project.demo).ensure()
    source = sorted(Path(cfg.project.slides_dir).glob("*.svs"))[0]
    slide = tmp_path / "slides" / source.name
    slide.parent.mkdir()
    slide.write_bytes(source.read_bytes())
    settings = TileSettings.from_config(cfg.tiles)
    folder = locations_dir(tmp_path / "locations", settings)
    cache_slides({slide.stem: slide}, tmp_path / "locations", settings)
    path = locations_path(folder, slide.stem)
    entry = read_locations(folder, slide.stem, slide)
    assert entry is not None and not list(folder.glob("*.partial")) and not list(folder.glob("*.lock"))
    assert read_locations(folder, slide.stem, slide, MppChoice(mpp=0.25)) is None  # another MPP: recomputed
    path.write_text(json.dumps({**entry, "status": "writing"}))
    assert read_locations(folder, slide.stem) is None
    path.write_text(json.dumps(entry)[:-100])  # truncated
    assert read_locations(folder, slide.stem) is None
    path.write_text(json.dumps(entry))
    slide.write_bytes(source.read_bytes() + b"changed")  # the slide file was replaced
    assert read_locations(folder, slide.stem, slide) is None
    rows = cache_slides({slide.stem: slide}, tmp_path / "locations", settings)
    assert rows.status.tolist() == ["done"]


def test_computing_the_cache_logs_progress_per_slide(
    two_slides: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = TileSettings(tile_px=64, tile_um=64)
    slides = {**two_slides, "gone": None}
    with caplog.at_level(logging.INFO, logger="src.extraction.locations"):
        cache_slides(slides, tmp_path / "locations", settings)
    lines = [r.getMessage() for r in caplog.records if r.name == "src.extraction.locations"]
    first, second = two_slides
    assert lines[0].startswith("Tile locations in ") and lines[0].endswith(": 3 of 3 slide(s) to compute")
    assert re.fullmatch(rf"Tile locations 1/3: {first} \(\d+ tiles, [\d.]+ s; \d+ s so far\)", lines[1])
    assert re.fullmatch(rf"Tile locations 2/3: {second} \(\d+ tiles, .*\)", lines[2])
    assert lines[3].startswith("Tile locations 3/3: gone (FAILED: FileNotFoundError: Slide file not found")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="src.extraction.locations"):
        cache_slides(two_slides, tmp_path / "locations", settings)  # all cached: nothing to say
    assert not [r for r in caplog.records if r.name == "src.extraction.locations"]
