"""The OpenSlide backend against tiffslide on the same real slide, and its RGBA handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src.slides.openslide_backend import OpenSlideReader, rgba_on_white
from src.slides.reader import SlideError, open_slide
from src.slides.tiffslide_backend import TiffSlideReader

# Both libraries decode the same stored JPEG tiles, each with its own bundled libjpeg-turbo; other
# builds may round the IDCT or chroma upsampling differently. Allowed: mean absolute difference
# <= 1 grey level and 99.9 % of values within 8. Measured (openslide-bin 4.0.1, imagecodecs
# 2026.3.6 with libjpeg-turbo 3.1.3): identical pixels, and identical CMU-1 tile counts.
MEAN_TOLERANCE = 1.0
MAX_TOLERANCE_999 = 8


def _assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.uint8
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.mean() <= MEAN_TOLERANCE
    assert np.quantile(diff, 0.999) <= MAX_TOLERANCE_999


@pytest.mark.parametrize(
    ("location", "size"),
    [((1000, 1000), (512, 384)), ((0, 0), (1024, 1024)), ((2100, 2800), (300, 300))],  # inside, corner, edge
)
def test_cmu1_region_matches_tiffslide(shared_slides: Path, location: tuple[int, int], size: tuple[int, int]) -> None:
    path = shared_slides / "cmu-1-small-region.svs"
    with open_slide(path, backend="openslide") as ours, open_slide(path, backend="tiffslide") as theirs:
        assert isinstance(ours, OpenSlideReader) and isinstance(theirs, TiffSlideReader)
        assert ours.properties["openslide.vendor"] == "aperio"
        assert ours.mpp == theirs.mpp
        _assert_close(ours.read_region(location, 0, size), theirs.read_region(location, 0, size))


def test_boxes_levels_match_tiffslide(shared_slides: Path) -> None:
    path = shared_slides / "boxes.tiff"
    with open_slide(path, 1.0, "openslide") as ours, open_slide(path, 1.0, "tiffslide") as theirs:
        assert ours.level_dimensions == theirs.level_dimensions
        np.testing.assert_allclose(ours.level_downsamples, theirs.level_downsamples, rtol=1e-3)
        for level, size in enumerate(ours.level_dimensions):
            _assert_close(ours.read_region((0, 0), level, size), theirs.read_region((0, 0), level, size))


def test_rgba_composited_on_white() -> None:
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128]]], np.uint8)
    rgb = rgba_on_white(rgba)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, 0].tolist() == [10, 20, 30]  # opaque: unchanged
    assert rgb[0, 1].tolist() == [255, 255, 255]  # transparent: white
    assert rgb[0, 2].tolist() == [127, 127, 127]  # half transparent black on white


def test_close_twice_is_harmless(shared_slides: Path) -> None:
    reader = OpenSlideReader(shared_slides / "small.svs")
    reader.close()
    reader.close()


def test_a_dicom_folder_is_opened_through_its_first_file(tmp_path: Path) -> None:
    # No real DICOM WSI is available here: these files only look like one from outside. The OpenSlide
    # bundled here (openslide-bin 4.0.1) has its DICOM reader; opening must get to it, naming the file.
    folder = tmp_path / "case 7"
    folder.mkdir()
    for name in ["b.dcm", "a.dcm"]:
        (folder / name).write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(SlideError, match=r"Cannot open slide .*case 7/a\.dcm with OpenSlide"):
        OpenSlideReader(folder)
    with pytest.raises(SlideError, match=r"Slide file not found: .*empty"):
        OpenSlideReader(tmp_path / "empty")
