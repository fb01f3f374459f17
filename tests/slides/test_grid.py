"""Tile grid geometry against Slideflow's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src.slides.grid import tile_grid
from src.slides.reader import open_slide


@pytest.mark.parametrize(
    ("tile_px", "tile_um", "full_extract_px", "expected"),
    [(256, 128, 256, 88), (128, 64, 128, 391), (299, 302, 605, 12)],
)
def test_cmu1_grid_counts_match_slideflow(
    shared_slides: Path, backend: str, tile_px: int, tile_um: int, full_extract_px: int, expected: int
) -> None:
    with open_slide(shared_slides / "cmu-1-small-region.svs", backend=backend) as reader:
        grid = tile_grid(reader, tile_px, tile_um)
    assert len(grid) == expected
    assert grid.full_extract_px == full_extract_px
    assert grid.stride == full_extract_px
    assert (grid.coords[:, 0] + full_extract_px <= 2220).all()
    assert (grid.coords[:, 1] + full_extract_px <= 2967).all()
    np.testing.assert_array_equal(grid.locs, grid.coords + full_extract_px // 2)
    assert grid.coords[0].tolist() == [0, 0]
    assert grid.coords[1].tolist() == [full_extract_px, 0]  # row-major


def test_stride_div_and_edge_tiles(shared_slides: Path, backend: str) -> None:
    with open_slide(shared_slides / "cmu-1-small-region.svs", backend=backend) as reader:
        half = tile_grid(reader, 256, 128, stride_div=2)
        edge = tile_grid(reader, 256, 128, use_edge_tiles=True)
    assert half.stride == 128
    assert len(half) == len(np.arange(0, 2221 - 256, 128)) * len(np.arange(0, 2968 - 256, 128))
    assert len(edge) == 9 * 12  # ceil(2220 / 256) x ceil(2967 / 256)


def test_level_choice_and_magnification(demo_svs: Path, backend: str) -> None:
    with open_slide(demo_svs, backend=backend) as reader:  # mpp 0.5, downsamples 1, 4, 16
        by_microns = tile_grid(reader, 64, 512)  # 1024 level-0 px -> downsample 16
        assert (by_microns.level, by_microns.extract_px) == (2, 64)
        assert by_microns.full_extract_px == 1024 and len(by_microns) == 1
        fine = tile_grid(reader, 64, 64)  # 128 px -> downsample 2 -> level 0
        assert (fine.level, fine.extract_px, len(fine)) == (0, 128, 64)
        five_x = tile_grid(reader, 64, "5x")
        assert (five_x.level, five_x.extract_px, five_x.full_extract_px) == (1, 64, 256)
        assert len(five_x) == 16
        with pytest.raises(ValueError, match="40x"):
            tile_grid(reader, 64, "40x")
        with pytest.raises(ValueError, match="tile_um"):
            tile_grid(reader, 64, "big")
