"""Extraction with another slide backend: ``dataset.backend`` on the command line, recorded per slide."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from src.commands import extract as extract_command
from src.extraction.extract import extract_slides
from src.extraction.report import REPORT_NAME
from src.extraction.shards import read_index, shard_dir
from src.slides.tile_settings import TileSettings
from tests.extraction.cli_helpers import cli_command, extract_config, run_cli

SETTINGS = TileSettings(tile_px=64, tile_um=64)
KEY_OVERRIDES = ["tiles.tile_px=64", "tiles.tile_um=64"]


def _link_slides(slides: dict[str, Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for path in slides.values():
        (folder / path.name).symlink_to(path)
    return folder


def test_cli_extracts_with_openslide_in_worker_processes(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slides_dir = _link_slides(two_slides, tmp_path / "slides")
    shards = tmp_path / "shards"
    run = run_cli(cli_command(slides_dir, shards, tmp_path, *KEY_OVERRIDES, "dataset.backend=openslide", "workers=2"))
    assert run.returncode == 0, run.stderr
    assert "2 slides: 2 extracted (" in run.stdout and "0 skipped (already complete, 0 tiles), 0 failed" in run.stdout
    folder = shard_dir(shards, SETTINGS)
    report = pd.read_csv(folder / REPORT_NAME, keep_default_na=False)
    assert report["backend"].tolist() == ["openslide", "openslide"]
    reference = extract_slides(two_slides, tmp_path / "reference", SETTINGS, progress=False)  # tiffslide
    assert reference["backend"].tolist() == ["tiffslide", "tiffslide"]
    for row in reference.itertuples():
        index = read_index(folder, row.slide)
        assert index is not None and index["backend"] == "openslide"
        assert index["grid_tiles"] == row.grid_tiles
        assert abs(index["num_tiles"] - row.kept_tiles) <= 1  # same slide, same pixels up to JPEG noise


def test_an_unknown_backend_fails_before_extraction(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slides_dir = _link_slides(two_slides, tmp_path / "slides")
    shards = tmp_path / "shards"
    cfg = extract_config(slides_dir, shards, tmp_path, *KEY_OVERRIDES, "dataset.backend=nope")
    with pytest.raises(ValueError, match=r"Unknown slide backend 'nope'.*'openslide'"):
        extract_command.run(cfg)  # what extract.py runs
    assert not shards.exists()


def test_skipped_slides_keep_the_backend_that_read_them(two_slides: dict[str, Path], tmp_path: Path) -> None:
    first = extract_slides(two_slides, tmp_path, SETTINGS, progress=False, backend="openslide")
    again = extract_slides(two_slides, tmp_path, SETTINGS, progress=False)  # tiffslide, nothing to do
    assert first["backend"].tolist() == ["openslide", "openslide"]
    assert again["status"].tolist() == ["skipped", "skipped"]
    assert again["backend"].tolist() == ["openslide", "openslide"]
