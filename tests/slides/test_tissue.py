"""Tissue filters: Slideflow's reference counts on CMU-1 and labelled real tiles; dark-field slides."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.demo.render import SlideLook, render_slide, tissue_masks
from src.demo.svs import write_svs
from src.slides.grid import tile_grid
from src.slides.reader import open_slide
from src.slides.tiles import TissueFilter, iter_tiles
from src.slides.tissue import (
    grayspace_fraction,
    is_dark_field,
    mask_fraction,
    otsu_level,
    otsu_mask,
    whitespace_fraction,
)

# Slideflow 3.0.2 on cmu-1-small-region.svs, grayspace defaults: kept without / with Otsu.
SLIDEFLOW_KEPT = [(256, 128, 37, 33), (128, 64, 157, 143), (299, 302, 6, 6)]


@pytest.mark.parametrize(("tile_px", "tile_um", "kept_plain", "kept_otsu"), SLIDEFLOW_KEPT)
def test_kept_counts_close_to_slideflow(
    shared_slides: Path, backend: str, tile_px: int, tile_um: int, kept_plain: int, kept_otsu: int
) -> None:
    with open_slide(shared_slides / "cmu-1-small-region.svs", backend=backend) as reader:
        grid = tile_grid(reader, tile_px, tile_um)
        plain = sum(1 for _ in iter_tiles(reader, grid, TissueFilter(qc=None)))
        otsu = sum(1 for _ in iter_tiles(reader, grid, TissueFilter(qc="otsu")))
    assert abs(plain - kept_plain) <= 0.15 * kept_plain
    assert abs(otsu - kept_otsu) <= 0.15 * kept_otsu
    assert otsu <= plain


def test_otsu_mask_separates_generated_tissue(demo_svs: Path, backend: str) -> None:
    with open_slide(demo_svs, backend=backend) as reader:
        assert otsu_level(reader) == 0  # level 1 is 256 px: not > 500
        mask, downsample = otsu_mask(reader)
        assert mask.shape == (1024, 1024) and downsample == 1.0
    # The slide fixture rendered from default_rng(0): the same draw gives its true tissue.
    tissue, _ = tissue_masks(np.random.default_rng(0), 1024)
    assert 0.35 < tissue.mean() < 0.5
    assert (mask == ~tissue).mean() > 0.97


def test_mask_fraction_of_footprints() -> None:
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True
    coords = np.array([[0, 0], [10, 0], [8, 6]])
    fraction = mask_fraction(mask, 2.0, coords, full_extract_px=4)  # 2 mask px per tile
    np.testing.assert_allclose(fraction, [0.0, 1.0, 0.5])


def test_pixel_fractions() -> None:
    tile = np.zeros((4, 4, 3), np.uint8)
    tile[:2] = 250  # white and gray
    tile[2:] = (200, 50, 100)  # saturated pink
    assert grayspace_fraction(tile) == 0.5
    assert whitespace_fraction(tile) == 0.5
    assert whitespace_fraction(tile, threshold=251) == 0.0


def _load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _keeps(path: Path) -> bool:
    return TissueFilter(qc=None).keeps(_load_rgb(path))


def test_real_tissue_tiles_pass(shared_tiles: Path) -> None:
    tiles = sorted(shared_tiles.glob("tissue-*.png"))
    assert len(tiles) == 6
    assert [p.name for p in tiles if not _keeps(p)] == []


def test_real_background_tiles_are_dropped(shared_tiles: Path) -> None:
    # The pen-mark tiles (no-tissue-green-pen, no-tissue-red-pen) are left to the test
    # below: pen ink is saturated, so the grayspace filter cannot drop them.
    names = ["no-tissue.png", "no-tissue2.png", "no-tissue-line.png"]
    names += [p.name for p in shared_tiles.glob("almost-white-*.png")]
    assert len(names) == 6
    assert [n for n in names if _keeps(shared_tiles / n)] == []


@pytest.mark.xfail(
    strict=True,
    reason="pen marks need Slideflow's blur/pen QC (GaussianV2), not implemented yet",
)
def test_pen_mark_tiles_are_dropped(shared_tiles: Path) -> None:
    names = ["no-tissue-green-pen.png", "no-tissue-red-pen.png"]
    assert [n for n in names if _keeps(shared_tiles / n)] == []


def dark_field(image: np.ndarray, tissue: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fluorescence-like slide from a rendered one: the tissue inverted (it glows), on a noisy black background
    (camera noise: each channel 0-11, so the background's saturation is as high as the tissue's)."""
    noise = np.random.default_rng(seed).integers(0, 12, image.shape, dtype=np.uint8)
    return np.where(tissue[..., None], 255 - image, noise).astype(np.uint8)


def test_a_dark_field_slide_is_masked_on_brightness_and_named(
    tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    image = render_slide(np.random.default_rng(0), 1024, SlideLook("squamous", 60.0))
    tissue, _ = tissue_masks(np.random.default_rng(0), 1024)  # the same draw: its true tissue
    write_svs(tmp_path / "bright.svs", image, mpp=0.5)
    write_svs(tmp_path / "dark.svs", dark_field(image, tissue), mpp=0.5)
    kept = {}
    with caplog.at_level(logging.WARNING, logger="src.slides.tissue"):
        for name in ("bright", "dark"):
            with open_slide(tmp_path / f"{name}.svs", backend=backend) as reader:
                mask, _ = otsu_mask(reader)
                assert (mask == ~tissue).mean() > 0.99, name  # saturation on the dark slide: 0.92
                grid = tile_grid(reader, 64, 32)
                kept[name] = sum(1 for _ in iter_tiles(reader, grid, TissueFilter(qc="otsu")))
    assert abs(kept["dark"] - kept["bright"]) <= 2  # saturation on the dark slide: 148 of 256, bright: 128
    assert "Slide dark has a dark background" in caplog.text and "dark-field (fluorescence)" in caplog.text
    assert "Slide bright" not in caplog.text


def test_only_a_dark_border_on_a_mostly_dark_image_is_dark_field() -> None:
    glass = np.full((100, 100, 3), 235, np.uint8)
    glass[30:70, 30:70] = (180, 80, 150)  # stained tissue
    assert not is_dark_field(glass)
    padded = glass.copy()
    padded[:, :8] = padded[:, -8:] = padded[:8] = padded[-8:] = 0  # black scanner padding at every edge
    assert not is_dark_field(padded)  # the border is dark, but the slide is mostly glass
    assert is_dark_field(255 - glass)
