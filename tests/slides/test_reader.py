"""SlideReader on real slides, generated slides, and broken ones (every shipped backend); picking a backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from src.demo.ndpi import write_ndpi
from src.demo.render import SlideLook, render_slide
from src.slides.openslide_backend import OpenSlideReader
from src.slides.reader import SlideError, backend_name, open_slide, reader_class, shipped_backends
from src.slides.tiffslide_backend import TiffSlideReader


def _vendor(properties: dict[str, str]) -> str | None:
    return properties.get("tiffslide.vendor", properties.get("openslide.vendor"))


def test_cmu1_geometry_and_pixels(shared_slides: Path, backend: str) -> None:
    with open_slide(shared_slides / "cmu-1-small-region.svs", backend=backend) as reader:
        assert reader.name == "cmu-1-small-region"
        assert reader.dimensions == (2220, 2967)
        assert reader.mpp == pytest.approx(0.499)
        assert reader.level_count == 1
        assert reader.level_dimensions == [(2220, 2967)]
        assert reader.level_downsamples == [1.0]
        assert _vendor(reader.properties) == "aperio"
        assert all(isinstance(v, str) for v in reader.properties.values())
        region = reader.read_region((1000, 1000), 0, (64, 32))
        assert region.shape == (32, 64, 3) and region.dtype == np.uint8
        assert region.std() > 5  # real tissue, not a blank fill


def test_read_region_pads_outside_with_white(shared_slides: Path, backend: str) -> None:
    with open_slide(shared_slides / "cmu-1-small-region.svs", backend=backend) as reader:
        inside = reader.read_region((2200, 2900), 0, (20, 67))
        region = reader.read_region((2200, 2900), 0, (100, 100))
        assert (region[:, 20:] == 255).all() and (region[67:] == 255).all()
        np.testing.assert_array_equal(region[:67, :20], inside)
        assert (reader.read_region((-100, -100), 0, (50, 50)) == 255).all()


def test_small_svs(shared_slides: Path, backend: str) -> None:
    with open_slide(shared_slides / "small.svs", backend=backend) as reader:
        assert reader.dimensions == (16, 16)
        assert reader.mpp == pytest.approx(0.499)
        assert reader.get_thumbnail(8).shape == (8, 8, 3)


def test_broken_slide_error_names_the_file(shared_slides: Path, backend: str) -> None:
    with pytest.raises(SlideError, match=r"broken\.svs"):
        open_slide(shared_slides / "broken.svs", backend=backend)


def test_missing_slide_error_names_the_file(tmp_path: Path, backend: str) -> None:
    with pytest.raises(SlideError, match=r"nothere\.svs"):
        open_slide(tmp_path / "nothere.svs", backend=backend)


def test_boxes_without_mpp_needs_override(shared_slides: Path, backend: str) -> None:
    # boxes.tiff carries the 72-dpi default resolution (352.8 um/px): not a microscope MPP.
    with pytest.raises(SlideError, match=r"boxes\.tiff.*mpp_override"):
        open_slide(shared_slides / "boxes.tiff", backend=backend)
    with open_slide(shared_slides / "boxes.tiff", mpp_override=1.0, backend=backend) as reader:
        assert reader.mpp == 1.0
        assert reader.level_count == 4
        assert reader.level_dimensions[0] == (300, 250)
        assert reader.level_dimensions[-1] == (37, 31)
        assert reader.best_level_for_downsample(3.0) == 1
        assert reader.best_level_for_downsample(100.0) == 3
        assert reader.read_region((0, 0), 2, (75, 62)).shape == (62, 75, 3)


def test_generated_slide_levels_and_name_with_spaces(demo_svs: Path, tmp_path: Path, backend: str) -> None:
    odd = tmp_path / "my slide (1).svs"
    shutil.copy(demo_svs, odd)
    with open_slide(odd, backend=backend) as reader:
        assert reader.name == "my slide (1)"
        assert reader.mpp == pytest.approx(0.5)
        assert reader.level_downsamples == [1.0, 4.0, 16.0]
        assert reader.best_level_for_downsample(4.0) == 1
        assert reader.best_level_for_downsample(3.9) == 0
        thumb = reader.get_thumbnail(100)
        assert thumb.shape == (100, 100, 3)
        # Level 1 agrees with level 0 downsized (same content, JPEG noise aside).
        low = reader.read_region((256, 256), 1, (64, 64)).astype(float)
        high = reader.read_region((256, 256), 0, (256, 256)).astype(float)
        downsized = high.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
        assert np.abs(low - downsized).mean() < 6


def test_mpp_override_does_not_replace_the_files_own(tmp_path: Path, backend: str) -> None:
    image = render_slide(np.random.default_rng(2), 512, SlideLook("squamous", 60.0))
    path = tmp_path / "scan.ndpi"
    write_ndpi(path, image, mpp=0.228)  # a 40x Hamamatsu scan
    with open_slide(path, mpp_override=0.5, backend=backend) as reader:
        assert reader.mpp == pytest.approx(0.228, rel=1e-3)  # the file's own, not the override


def test_a_per_slide_mpp_replaces_the_files_own(demo_svs: Path, backend: str) -> None:
    with open_slide(demo_svs, mpp_override=0.5, backend=backend, mpp=0.25) as reader:
        assert reader.mpp == 0.25


def test_reader_class_from_short_names_and_dotted_paths() -> None:
    assert reader_class(None) is TiffSlideReader
    assert reader_class("tiffslide") is TiffSlideReader
    assert reader_class("openslide") is OpenSlideReader
    assert reader_class("src.slides.openslide_backend.OpenSlideReader") is OpenSlideReader
    assert reader_class("src.slides.openslide_backend") is OpenSlideReader  # a module with one reader
    assert {"tiffslide", "openslide"} <= set(shipped_backends())
    for cls in (TiffSlideReader, OpenSlideReader):
        assert reader_class(backend_name(cls)) is cls
    assert backend_name(OpenSlideReader) == "openslide"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nope", r"Unknown slide backend 'nope': choose one of \[.*'openslide'.*'tiffslide'"),
        ("no_such_pkg.Reader", r"Unknown slide backend 'no_such_pkg\.Reader'"),
        ("src.slides.tiffslide_backend.Nope", r"tiffslide_backend has no 'Nope'"),
        ("src.slides.reader.SlideReader", r"not a concrete SlideReader subclass"),
        ("pathlib.Path", r"not a concrete SlideReader subclass"),
        ("src.slides.reader", r"exactly one SlideReader subclass"),
    ],
    ids=["short-name", "missing-package", "missing-class", "abstract", "not-a-reader", "module-without-reader"],
)
def test_unknown_backend_is_a_clear_error(demo_svs: Path, setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_slide(demo_svs, backend=setting)
