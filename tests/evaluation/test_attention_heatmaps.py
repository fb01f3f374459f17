"""Attention heatmaps: each tile paints its own square with its value; the figure is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from src.evaluation.attention_heatmaps import attention_grid, save_attention_heatmap
from src.models.mil.attention_mil import AttentionMIL


def test_each_tile_paints_its_square_with_its_attention(tmp_path: Path) -> None:
    torch.manual_seed(0)
    coords = np.array([[64, 64], [192, 64], [64, 192]])  # 128 px tiles on a 256 x 256 level-0 slide
    model = AttentionMIL(n_features=8, outcome_sizes=[2], hidden_width=8).eval()
    with torch.no_grad():
        _, attention = model(torch.randn(1, 3, 8), return_attention=True)
    values = attention[0].numpy()
    grid = attention_grid(coords, values, extent_px=128, shape=(32, 32), downsample=8)  # 16 px per tile
    for (x, y), value in zip(coords, values, strict=True):
        square = grid[(y - 64) // 8 : (y + 64) // 8, (x - 64) // 8 : (x + 64) // 8]
        assert square.shape == (16, 16) and np.allclose(square, value)
    assert np.isnan(grid[16:, 16:]).all()  # no tile there
    np.testing.assert_allclose(np.nansum(grid) / 256, 1.0, rtol=1e-5)  # attention sums to 1 over real tiles

    thumbnail = np.full((32, 32, 3), 230, np.uint8)
    path = save_attention_heatmap(thumbnail, coords, values, 128, 8, tmp_path / "heatmaps" / "s1.png", title="s1")
    assert Image.open(path).size[0] > 0
