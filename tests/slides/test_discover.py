"""find_slides: extensions, names, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.slides.discover import find_slides, reads_format, slide_format, unreadable_slides, unsupported_format
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


def _fake_dicom_folder(folder: Path) -> Path:
    """A folder laid out as a multi-file DICOM WSI (the files are not real DICOM)."""
    folder.mkdir()
    for name in ["level-1.dcm", "level-0.DCM", "label.dcm", "notes.txt"]:
        (folder / name).write_bytes(b"\0" * 128 + b"DICM")
    return folder


def test_qptiff_and_dicom_folders_are_slides(tmp_path: Path) -> None:
    (tmp_path / "vectra scan.qptiff").touch()
    (tmp_path / "single.dcm").touch()
    _fake_dicom_folder(tmp_path / "case 7.v2")  # one slide, named after the folder
    (tmp_path / "empty").mkdir()
    assert list(find_slides(tmp_path)) == ["vectra scan"]  # tiffslide reads QPTIFF, not DICOM
    openslide = find_slides(tmp_path, reader_class("openslide").extensions)
    assert list(openslide) == ["case 7.v2", "single"]
    assert openslide["case 7.v2"] == tmp_path / "case 7.v2" / "label.dcm"  # OpenSlide finds the rest of the series
    assert slide_format(tmp_path / "case 7.v2") == "dcm" and slide_format(tmp_path / "vectra scan.qptiff") == "qptiff"
    assert reads_format(reader_class("openslide").extensions, tmp_path / "case 7.v2")
    assert not reads_format(reader_class("tiffslide").extensions, tmp_path / "case 7.v2")


def test_dicom_folder_and_file_of_one_name_are_duplicates(tmp_path: Path) -> None:
    _fake_dicom_folder(tmp_path / "x")
    (tmp_path / "x.svs").touch()
    with pytest.raises(ValueError, match=r"Duplicate slide name 'x'"):
        find_slides(tmp_path, reader_class("openslide").extensions)


def test_slides_another_backend_reads_are_reported_not_missing(tmp_path: Path) -> None:
    for name in ["a.svs", "b.mrxs", "c.qptiff", "d.txt"]:
        (tmp_path / name).touch()
    _fake_dicom_folder(tmp_path / "e")
    tiffslide = reader_class("tiffslide").extensions
    assert unreadable_slides(tmp_path, tiffslide) == {"b": tmp_path / "b.mrxs", "e": tmp_path / "e" / "label.dcm"}
    assert unreadable_slides(tmp_path, reader_class("openslide").extensions) == {"c": tmp_path / "c.qptiff"}
    dicom = tmp_path / "e" / "label.dcm"
    expected = f"unsupported format for backend tiffslide: {dicom}; use dataset.backend=openslide"
    assert unsupported_format(dicom, "tiffslide") == expected
    assert unsupported_format(tmp_path / "c.qptiff", "openslide").endswith("use dataset.backend=tiffslide")


def test_duplicate_names_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "x.svs").touch()
    (tmp_path / "x.tif").touch()
    with pytest.raises(ValueError, match=r"x\.svs.*x\.tif"):
        find_slides(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_slides(tmp_path / "absent")
