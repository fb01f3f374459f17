"""find_slides: extensions, names, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.slides.discover import find_slides
from src.slides.reader import reader_class


def test_finds_slide_extensions_case_insensitively(tmp_path: Path) -> None:
    for name in ["a.svs", "b (1).TIFF", "c.ndpi", "notes.txt", "d.png", "e.Scn"]:
        (tmp_path / name).touch()
    (tmp_path / "sub.svs").mkdir()
    slides = find_slides(tmp_path)
    assert list(slides) == ["a", "b (1)", "c", "e"]
    assert slides["b (1)"] == tmp_path / "b (1).TIFF"


def test_each_backend_finds_the_formats_it_reads(tmp_path: Path) -> None:
    for name in ["a.svs", "b.mrxs", "c.DCM", "d.vms", "e.svslide", "f.bif", "g.txt"]:
        (tmp_path / name).touch()
    (tmp_path / "b").mkdir()  # MIRAX keeps its data in a folder named like the slide
    assert list(find_slides(tmp_path)) == ["a", "f"]  # tiffslide's, the default
    assert list(find_slides(tmp_path, reader_class("tiffslide").extensions)) == ["a", "f"]
    assert list(find_slides(tmp_path, reader_class("openslide").extensions)) == ["a", "b", "c", "d", "e", "f"]
    assert list(find_slides(tmp_path, [".MRXS"])) == ["b"]  # dot and case do not matter


def test_duplicate_names_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "x.svs").touch()
    (tmp_path / "x.tif").touch()
    with pytest.raises(ValueError, match=r"x\.svs.*x\.tif"):
        find_slides(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_slides(tmp_path / "absent")
