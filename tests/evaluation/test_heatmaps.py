"""Heatmap layers per outcome kind (fixed scales), the value grid, and drawing."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from src.evaluation.heatmaps import ValueGrid, draw_heatmap
from src.outcomes import outcome_kind
from tests.conf_options import outcome_kinds


def test_each_kind_chooses_its_panels_and_a_fixed_scale() -> None:
    binary = outcome_kind("categorical")("tumor_type", classes=["adeno", "squamous"])
    (panel,) = binary.heatmap_layers()
    assert (panel.column, panel.title, panel.vmin, panel.vmax, panel.vcenter) == (
        "tumor_type-y_pred1", "P(squamous)", 0.0, 1.0, 0.5,
    )  # fmt: skip
    three = outcome_kind("categorical")("grade", classes=["1", "2", "3"]).heatmap_layers()
    assert [p.column for p in three] == ["grade-y_pred0", "grade-y_pred1", "grade-y_pred2"]
    (value,) = outcome_kind("linear")("cellularity").heatmap_layers(head_mean=40.0, head_scale=10.0)
    assert (value.column, value.vmin, value.vmax) == ("cellularity-y_pred", 20.0, 60.0)
    (risk,) = outcome_kind("cox")("os_time", event="os_event").heatmap_layers(head_mean=3.0, head_scale=9.0)
    assert (risk.column, risk.vmin, risk.vmax, risk.vcenter) == ("os_time-risk", -1.0, 1.0, 0.0)
    cmap, norm = matplotlib.colormaps[risk.cmap], risk.norm()
    assert cmap(norm(-5.0)) == cmap(norm(-1.0)) and cmap(norm(5.0)) == cmap(norm(1.0))  # the end colours


def test_the_grid_puts_each_tile_at_its_location(tmp_path: Path) -> None:
    locs = np.array([[32, 32], [96, 32], [32, 160]])
    grid = ValueGrid.from_tiles(
        locs[:, 0], locs[:, 1], {"a-y_pred": np.array([1.0, 2.0, 3.0])}, (32, 32), (3, 2), 64, (128, 192)
    )
    expected = np.full((3, 2), np.nan)
    expected[0, 0], expected[0, 1], expected[2, 0] = 1.0, 2.0, 3.0
    np.testing.assert_array_equal(grid.plane("a-y_pred"), expected)
    assert grid.extent() == (0.0, 128.0, 192.0, 0.0)
    grid.save(tmp_path / "grid.npz")
    saved = np.load(tmp_path / "grid.npz")
    np.testing.assert_array_equal(saved["values"][0], expected)
    assert saved["loc_x"].tolist() == [32, 96] and saved["loc_y"].tolist() == [32, 96, 160]
    layers = outcome_kind("linear")("a").heatmap_layers(2.0, 1.0)
    path = draw_heatmap(np.full((192, 128, 3), 240, np.uint8), grid, layers, tmp_path / "map.png", "a")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kind", outcome_kinds())  # every kind a conf/loss option names
def test_every_layer_draws_a_prediction_column_of_its_outcome(kind: str) -> None:
    outcome = outcome_kind(kind)("y", classes=["a", "b", "c"], event="e")
    assert {layer.column for layer in outcome.heatmap_layers()} <= set(outcome.output_columns())
