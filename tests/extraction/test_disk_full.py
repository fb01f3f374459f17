"""A full disk: every slide that cannot be written fails with the reason, and no temporary file is left."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path
from typing import Any

import pytest

from src.extraction.extract import extract_slides
from src.extraction.report import REPORT_NAME, summarize
from src.extraction.shards import read_index, shard_dir, tar_path
from src.slides.tile_settings import TileSettings
from tests.full_disk import FullDisk

SETTINGS = TileSettings(tile_px=64, tile_um=64)


def _extract(slides: dict[str, Path], root: Path, disk: FullDisk, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", disk.open)
        return extract_slides(slides, root, SETTINGS, progress=False)


def test_a_full_disk_fails_every_slide_cleanly(
    two_slides: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    slides = {**two_slides, "gone": None}
    with caplog.at_level(logging.ERROR):
        report = _extract(slides, tmp_path, FullDisk(tmp_path, free=0), monkeypatch)  # no exception
    folder = shard_dir(tmp_path, SETTINGS)
    assert report["status"].tolist() == ["failed"] * 3
    for slide in two_slides:
        error = report.set_index("slide").loc[slide, "error"]
        assert "No space left on device" in error and str(folder) in error and "free disk space" in error
    assert "Slide file not found" in report.set_index("slide").loc["gone", "error"]
    assert not list(folder.rglob("*.partial")) and not list(folder.rglob("*.lock"))
    assert not (folder / REPORT_NAME).exists()
    assert "Could not update the extraction report" in caplog.text and "No space left on device" in caplog.text
    summary = summarize(report)
    assert summary.startswith("3 slides: 0 extracted (0 tiles in 0.0 s), 0 skipped (already complete, 0 tiles), ")
    assert summary.count("FAILED") == 3 and summary.count("No space left on device") == 2


def test_the_disk_fills_up_during_the_second_slide(
    two_slides: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = list(two_slides)
    sizes = FullDisk(tmp_path / "measure", free=float("inf"))
    _extract({first: two_slides[first]}, tmp_path / "measure", sizes, monkeypatch)
    reference = shard_dir(tmp_path / "reference", SETTINGS)
    extract_slides(two_slides, tmp_path / "reference", SETTINGS, progress=False)
    # room for the first slide (tar, thumbnail, index; its report, a few hundred bytes) and half the second's tar
    free = sizes.used - 1 + tar_path(reference, second).stat().st_size // 2
    report = _extract(two_slides, tmp_path / "shards", FullDisk(tmp_path / "shards", free), monkeypatch)
    folder = shard_dir(tmp_path / "shards", SETTINGS)
    assert report["status"].tolist() == ["done", "failed"]
    assert "No space left on device" in report["error"].iloc[1]
    assert tar_path(folder, first).read_bytes() == tar_path(reference, first).read_bytes()
    assert read_index(folder, second) is None and not tar_path(folder, second).exists()
    assert not list(folder.rglob("*.partial")) and not list(folder.rglob("*.lock"))
    again = extract_slides(two_slides, tmp_path / "shards", SETTINGS, progress=False)  # space freed
    assert again["status"].tolist() == ["skipped", "done"]
    assert tar_path(folder, second).read_bytes() == tar_path(reference, second).read_bytes()
