"""The OpenSlide backend against tiffslide on the same real slide, its RGBA handling, and DICOM WSIs (synthetic
series from src.demo.dicom): read, or refused with what OpenSlide reads and what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src.demo.dicom import write_dicom_wsi
from src.demo.render import SlideLook, render_slide
from src.slides.openslide_backend import DICOM_SUPPORT, OpenSlideReader, rgba_on_white
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


def test_a_dicom_wsi_series_opens_through_one_file_or_its_folder(tmp_path: Path) -> None:
    image = render_slide(np.random.default_rng(0), 1024, SlideLook("squamous", 60.0))
    level0, _ = write_dicom_wsi(tmp_path / "case 7", image, mpp=0.5)
    for path in (level0, tmp_path / "case 7"):
        with open_slide(path, backend="openslide") as reader:
            assert reader.properties["openslide.vendor"] == "dicom"
            assert reader.level_dimensions == [(1024, 1024), (256, 256)] and reader.mpp == pytest.approx(0.5)
            np.testing.assert_array_equal(reader.read_region((100, 200), 0, (300, 150)), image[200:350, 100:400])


@pytest.mark.parametrize(
    ("writer", "reason", "fix"),
    [
        ({"image_type": ("DERIVED", "PRIMARY")}, "Couldn't get image flavor", "set the image flavor in each file"),
        ({"transfer_syntax": "1.2.840.10008.1.2.4.80"}, "Unsupported transfer syntax", "transcode the series"),
        ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER", "NONE")}, "No pyramid levels found",
         "put every file of the series in one folder"),
    ],
)  # fmt: skip
def test_a_dicom_wsi_openslide_cannot_open_says_which_it_reads_and_what_to_do(
    tmp_path: Path, writer: dict, reason: str, fix: str
) -> None:
    level0, *_ = write_dicom_wsi(tmp_path / "series", np.full((512, 512, 3), 200, np.uint8), mpp=0.5, **writer)
    with pytest.raises(SlideError) as raised:
        open_slide(level0, backend="openslide")
    message = str(raised.value)
    assert message.startswith(f"Cannot open slide {level0} with OpenSlide: ") and reason in message  # OpenSlide's
    assert DICOM_SUPPORT in message  # which DICOM WSIs OpenSlide reads, exactly
    assert f"To read this slide: {fix}" in message


def test_a_dicom_file_under_tiffslide_names_the_backend_that_reads_it(tmp_path: Path) -> None:
    level0, *_ = write_dicom_wsi(tmp_path / "series", np.full((512, 512, 3), 200, np.uint8), mpp=0.5)
    with pytest.raises(SlideError, match=r"^unsupported format for backend tiffslide: .*level0\.dcm; "
                       r"use dataset\.backend=openslide$"):  # fmt: skip
        open_slide(level0)  # was tifffile's "not a TIFF file: header=..."
