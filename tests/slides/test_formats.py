"""Slide formats: JPEG 2000 SVS, generic pyramidal TIFF, odd file names; the direct JPEG path; bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

import src.slides.reader as reader_module
import src.slides.tissue as tissue_module
from src.demo.large_slide import LargeSlide
from src.demo.ndpi import write_ndpi
from src.demo.render import SlideLook, render_slide
from src.demo.svs import write_svs
from src.extraction.extract import extract_slides
from src.extraction.shards import iter_shard, read_index, shard_dir, tar_path
from src.slides.discover import find_slides
from src.slides.reader import SlideReader, open_slide
from src.slides.tile_settings import TileSettings
from src.slides.tissue import otsu_mask


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return render_slide(np.random.default_rng(5), 1024, SlideLook("adenocarcinoma", 50.0))


@pytest.mark.parametrize(("compression", "code"), [("jpeg2000", 33003), ("jpeg2000_rgb", 33005)])
def test_jpeg2000_svs(image: np.ndarray, tmp_path: Path, compression: str, code: int) -> None:
    path = tmp_path / "j2k.svs"
    write_svs(path, image, mpp=0.5, compression=compression)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == code
    with open_slide(path) as reader:
        assert reader.properties["tiffslide.vendor"] == "aperio"
        assert reader.mpp == pytest.approx(0.5)
        assert reader.level_downsamples == [1.0, 4.0, 16.0]
        np.testing.assert_array_equal(reader.read_region((128, 256), 0, (300, 200)), image[256:456, 128:428])
        assert reader._jpeg_level(0) is None  # not JPEG: tiffslide decodes it
        tile = reader.read_tile((256, 256), 0, 256, 128)
        np.testing.assert_array_equal(tile, SlideReader.read_tile(reader, (256, 256), 0, 256, 128))


def _write_generic_pyramid(path: Path, image: np.ndarray, mpp: float) -> None:
    """A plain pyramidal TIFF as libvips/OME tools write it: level 0 with two reduced SubIFDs."""
    import cv2

    res = (1e4 / mpp, 1e4 / mpp)
    options = {"tile": (256, 256), "compression": "jpeg", "photometric": "rgb", "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=2, resolution=res, metadata=None, **options)
        for downsample in (2, 4):
            level = cv2.resize(image, (image.shape[1] // downsample,) * 2, interpolation=cv2.INTER_AREA)
            scaled = (res[0] / downsample, res[1] / downsample)
            tif.write(level, subfiletype=1, resolution=scaled, metadata=None, **options)


def test_generic_pyramidal_tiff_and_direct_jpeg(image: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "generic.tif"
    _write_generic_pyramid(path, image, mpp=0.25)
    with open_slide(path) as reader:
        assert reader.mpp == pytest.approx(0.25)  # from the resolution tags
        assert reader.level_dimensions == [(1024, 1024), (512, 512), (256, 256)]
        assert reader.level_downsamples == [1.0, 2.0, 4.0]
        assert reader._jpeg_level(0) is not None and reader._jpeg_level(1) is not None
        for location, level, extract_px, tile_px in [
            ((0, 0), 0, 256, 256),  # one stored tile, no resize: identical
            ((256, 512), 0, 512, 256),  # 2x2 stored tiles decoded at 1/2 scale (DCT domain)
            ((100, 300), 0, 300, 128),  # unaligned, across stored tiles, resized
            ((512, 512), 1, 128, 64),
            ((900, 900), 0, 256, 256),  # over the edge: white padding
        ]:
            fast = reader.read_tile(location, level, extract_px, tile_px).astype(int)
            generic = SlideReader.read_tile(reader, location, level, extract_px, tile_px).astype(int)
            assert fast.shape == (tile_px, tile_px, 3)
            assert np.abs(fast - generic).mean() < 1.5  # DCT-domain downscaling vs area interpolation
            if extract_px == tile_px:
                np.testing.assert_array_equal(fast, generic)
        assert (reader.read_tile((900, 900), 0, 256, 256)[124:] == 255).all()


def test_odd_names_extract_and_resume(image: np.ndarray, tmp_path: Path) -> None:
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    name = "TCGA 01 (copy) [2]"
    write_svs(slides_dir / f"{name}.svs", image, mpp=0.5)
    _write_generic_pyramid(slides_dir / "ünïcode slide.tif", image, mpp=0.5)
    slides = find_slides(slides_dir)
    assert list(slides) == [name, "ünïcode slide"]
    settings = TileSettings(tile_px=64, tile_um=64)
    report = extract_slides(slides, tmp_path / "shards", settings, progress=False)
    assert report["status"].tolist() == ["done", "done"]
    folder = shard_dir(tmp_path / "shards", settings)
    for slide in slides:
        index = read_index(folder, slide, slides[slide])
        assert index is not None and index["num_tiles"] > 0
        assert [[x, y] for _, x, y in iter_shard(tar_path(folder, slide))] == index["locations"]
    again = extract_slides(slides, tmp_path / "shards", settings, progress=False)
    assert again["status"].tolist() == ["skipped", "skipped"]


def test_otsu_on_a_slide_without_pyramid_streams_level_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flat.svs"
    slide = LargeSlide(4096, seed=1)
    slide.write(path, downsamples=())  # level 0 only, written tile by tile
    level_bytes = 4096 * 4096 * 3
    monkeypatch.setattr(reader_module, "BAND_BYTES", 2 << 20)
    monkeypatch.setattr(tissue_module, "OTSU_MAX_PIXELS", 512 * 512)
    with open_slide(path) as reader:
        assert reader.level_count == 1
        tracemalloc.start()
        try:
            mask, downsample = otsu_mask(reader)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert mask.shape == (512, 512) and downsample == 8.0
    assert peak < 0.2 * level_bytes  # never the whole level 0 (50 MB) at once
    assert abs((~mask).mean() - slide.tissue_fraction()) < 0.03


def test_qptiff_is_read_and_extracted_by_tiffslide(image: np.ndarray, tmp_path: Path) -> None:
    # A brightfield QPTIFF is a pyramidal TIFF under another extension: here a generated SVS, renamed.
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    write_svs(slides_dir / "vectra.qptiff", image, mpp=0.5)
    slides = find_slides(slides_dir)
    assert list(slides) == ["vectra"]
    with open_slide(slides["vectra"]) as reader:
        assert reader.mpp == pytest.approx(0.5) and reader.dimensions == (1024, 1024)
    report = extract_slides(slides, tmp_path / "shards", TileSettings(tile_px=64, tile_um=64), progress=False)
    assert report["status"].tolist() == ["done"] and report["kept_tiles"].iloc[0] > 0


def test_hamamatsu_ndpi(image: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "scan (ndpi).ndpi"
    write_ndpi(path, image, mpp=0.5)  # NDPI's TIFF variant: 64-bit IFD offsets, JPEG strips, Hamamatsu tags
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ndpi
    with open_slide(path) as reader:
        assert reader.properties["tiffslide.vendor"] == "hamamatsu"
        assert reader.properties["tiffslide.objective-power"] == "20.0"
        assert reader.mpp == pytest.approx(0.5)
        assert reader.level_dimensions == [(1024, 1024), (256, 256), (64, 64)]
        region = reader.read_region((256, 512), 0, (256, 128)).astype(int)
        assert np.abs(region - image[512:640, 256:512]).mean() < 3  # JPEG q90
        assert reader.read_tile((0, 0), 1, 64, 32).shape == (32, 32, 3)
    settings = TileSettings(tile_px=64, tile_um=128)  # 256 level-0 px: read at level 1 (downsample 4)
    report = extract_slides({path.stem: path}, tmp_path / "shards", settings, progress=False)
    assert report["status"].tolist() == ["done"] and report["level"].tolist() == [1]
    assert report["kept_tiles"].iloc[0] > 0
