"""extract_slides into shards: content, resume, settings folders, failures, CLI."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from src.extraction.extract import extract_slides
from src.extraction.shards import iter_shard, read_index, shard_dir, tar_path
from src.slides.grid import tile_grid
from src.slides.reader import open_slide
from src.slides.tile_settings import TileSettings
from src.slides.tiles import TissueFilter

SETTINGS = TileSettings(tile_px=64, tile_um=64)


def test_shards_match_index_and_grid(two_slides: dict[str, Path], tmp_path: Path) -> None:
    report = extract_slides(two_slides, tmp_path, SETTINGS, progress=False)
    assert report["status"].tolist() == ["done", "done"]
    folder = shard_dir(tmp_path, SETTINGS)
    assert folder == tmp_path / SETTINGS.key
    assert (folder / "extraction_report.csv").is_file()
    for row in report.itertuples():
        index = read_index(folder, row.slide)
        assert index is not None and index["status"] == "complete"
        assert index["settings"] == SETTINGS.to_dict()
        assert index["grid_tiles"] == row.grid_tiles == 36  # (768 // 128) ** 2
        assert 0 < index["num_tiles"] == row.kept_tiles < row.grid_tiles
        with tarfile.open(tar_path(folder, row.slide)) as tar:
            names = tar.getnames()
        assert names[:4] == ["000000.jpg", "000000.json", "000001.jpg", "000001.json"]
        tiles = list(iter_shard(tar_path(folder, row.slide)))
        assert len(tiles) == index["num_tiles"]
        assert [[x, y] for _, x, y in tiles] == index["locations"]
        with open_slide(two_slides[row.slide]) as reader:
            grid = tile_grid(reader, 64, 64)
        centres = {tuple(loc) for loc in grid.locs.tolist()}
        assert all((x, y) in centres for _, x, y in tiles)
        for image, _, _ in tiles[:5]:
            decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
            assert decoded.shape == (64, 64, 3)
            assert decoded.std() > 3  # tissue, not blank


def test_tile_pixels_match_the_slide(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slide, path = next(iter(two_slides.items()))
    extract_slides({slide: path}, tmp_path, SETTINGS, progress=False)
    image, loc_x, loc_y = next(iter_shard(tar_path(shard_dir(tmp_path, SETTINGS), slide)))
    tile = cv2.cvtColor(cv2.imdecode(np.frombuffer(image, np.uint8), 1), cv2.COLOR_BGR2RGB)
    with open_slide(path) as reader:
        region = reader.read_region((loc_x - 64, loc_y - 64), 0, (128, 128))
    expected = cv2.resize(region, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(tile.astype(float) - expected).mean() < 4  # JPEG q95 noise only


def test_second_run_skips_and_new_settings_get_new_folder(two_slides: dict[str, Path], tmp_path: Path) -> None:
    first = extract_slides(two_slides, tmp_path, SETTINGS, progress=False)
    again = extract_slides(two_slides, tmp_path, SETTINGS, progress=False)
    assert again["status"].tolist() == ["skipped", "skipped"]
    assert again["kept_tiles"].tolist() == first["kept_tiles"].tolist()
    other = TileSettings(tile_px=64, tile_um=64, tissue=TissueFilter(grayspace_fraction=1.0))
    third = extract_slides(two_slides, tmp_path, other, progress=False)
    assert third["status"].tolist() == ["done", "done"]
    assert shard_dir(tmp_path, other) != shard_dir(tmp_path, SETTINGS)
    assert (third["kept_tiles"] >= first["kept_tiles"]).all()


def test_incomplete_slide_is_redone(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slide = next(iter(two_slides))
    extract_slides(two_slides, tmp_path, SETTINGS, progress=False)
    folder = shard_dir(tmp_path, SETTINGS)
    index_file = folder / f"{slide}.index.json"
    index = json.loads(index_file.read_text())
    tar_bytes = tar_path(folder, slide).read_bytes()
    index_file.write_text(json.dumps({**index, "status": "writing"}))
    assert read_index(folder, slide) is None
    report = extract_slides(two_slides, tmp_path, SETTINGS, progress=False)
    assert sorted(report["status"]) == ["done", "skipped"]
    redone = read_index(folder, slide)
    assert redone is not None and redone["locations"] == index["locations"]
    assert tar_path(folder, slide).read_bytes() == tar_bytes


def test_failed_slide_is_recorded_and_others_complete(
    two_slides: dict[str, Path], broken_svs: Path, tmp_path: Path
) -> None:
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    bad = slides_dir / "bad one.svs"
    shutil.copy(broken_svs, bad)
    slides = {"bad one": bad, "missing": slides_dir / "missing.svs", **two_slides}
    report = extract_slides(slides, tmp_path / "shards", SETTINGS, progress=False)
    status = dict(zip(report["slide"], report["status"], strict=True))
    assert status == {"bad one": "failed", "missing": "failed"} | dict.fromkeys(two_slides, "done")
    errors = report.set_index("slide")["error"]
    assert "bad one.svs" in errors["bad one"] and "missing.svs" in errors["missing"]
    folder = shard_dir(tmp_path / "shards", SETTINGS)
    assert read_index(folder, "bad one") is None
    assert not list(folder.glob("*.partial"))
    csv = pd.read_csv(folder / "extraction_report.csv")
    assert csv["status"].tolist() == report["status"].tolist()


@pytest.mark.parametrize("img_format", ["png"])
def test_png_format(two_slides: dict[str, Path], tmp_path: Path, img_format: str) -> None:
    settings = TileSettings(tile_px=32, tile_um=64, img_format=img_format)
    slide, path = next(iter(two_slides.items()))
    extract_slides({slide: path}, tmp_path, settings, progress=False)
    image, _, _ = next(iter_shard(tar_path(shard_dir(tmp_path, settings), slide)))
    assert image.startswith(b"\x89PNG")
