"""A damaged shard (truncated, overwritten) is never taken as complete: re-extracted, or a clear error."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import pytest

from src.data.tiles import TileIndex
from src.extraction.extract import extract_slides
from src.extraction.settings import TileSettings
from src.extraction.shards import ends_crc32, index_path, read_index, shard_damage, shard_dir, tar_path
from src.slides.discover import find_slides

SETTINGS = TileSettings(tile_px=64, tile_um=64)


@pytest.fixture
def extracted(two_slides: dict[str, Path], tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """Copies of two slides, extracted: (slide -> file, shard folder)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    for path in two_slides.values():
        shutil.copy2(path, folder / path.name)
    slides = find_slides(folder)
    extract_slides(slides, tmp_path / "shards", SETTINGS, progress=False)
    return slides, shard_dir(tmp_path / "shards", SETTINGS)


def test_the_index_records_the_tar_size_and_checksums(extracted: tuple[dict[str, Path], Path]) -> None:
    slides, folder = extracted
    for slide in slides:
        data = tar_path(folder, slide).read_bytes()
        record = read_index(folder, slide)["tar"]
        assert record["bytes"] == len(data) and record["crc32"] == zlib.crc32(data)
        assert record["crc32_ends"] == ends_crc32(tar_path(folder, slide), len(data))
        assert shard_damage(folder, slide) is None


@pytest.mark.parametrize("damage", ["truncate", "overwrite the end"])
def test_a_damaged_shard_is_extracted_again(extracted: tuple[dict[str, Path], Path], damage: str) -> None:
    slides, folder = extracted
    first, second = list(slides)
    tar = tar_path(folder, first)
    before = tar.read_bytes()
    if damage == "truncate":
        os.truncate(tar, len(before) // 2)
        assert "truncated" in shard_damage(folder, first)
    else:  # same size, damaged last block (a torn write, a bad copy)
        tar.write_bytes(before[:-512] + b"\x01" * 512)
        assert "checksum" in shard_damage(folder, first)
    assert read_index(folder, first) is None and read_index(folder, first, slides[first]) is None
    report = extract_slides(slides, folder.parent, SETTINGS, progress=False).set_index("slide")
    assert report.loc[first, "status"] == "done" and report.loc[second, "status"] == "skipped"
    assert tar.read_bytes() == before
    assert read_index(folder, first, slides[first]) is not None


def test_a_damaged_shard_without_its_slide_file_is_a_clear_error(extracted: tuple[dict[str, Path], Path]) -> None:
    slides, folder = extracted
    first, second = list(slides)
    tar = tar_path(folder, first)
    os.truncate(tar, tar.stat().st_size - 1000)
    slides[first].unlink()
    for path in (slides[first], None):  # a file that is gone, or no file found for the slide
        report = extract_slides({first: path, second: slides[second]}, folder.parent, SETTINGS, progress=False)
        row = report.set_index("slide").loc[first]
        assert row["status"] == "failed"
        assert f"slide '{first}'" in row["error"] and str(tar) in row["error"] and "truncated" in row["error"]
        assert "Put the slide file back" in row["error"] and str(index_path(folder, first)) in row["error"]
    assert tar.exists()  # nothing deleted that the user may want to recover
    with pytest.raises(FileNotFoundError, match=rf"slide '{first}' is damaged: {tar}.*truncated"):
        TileIndex.from_shards(folder, [second, first])
    assert len(TileIndex.from_shards(folder, [second])) == read_index(folder, second)["num_tiles"]
