"""The training tiles' colour statistics and a new slide's distance from them, against brute-force NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.tile_colour import MIN_SD, colour_distance, colour_stats, pooled_stats


def test_colour_stats_are_the_mean_and_sd_over_slides_of_each_slides_mean_tile_colour() -> None:
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8)
    slide_idx = np.repeat([0, 1, 2], [12, 10, 8])
    stats = colour_stats(lambda i: torch.from_numpy(tiles[i]), slide_idx, per_slide=100)  # every tile
    per_slide = np.array([tiles[slide_idx == s].mean(axis=(0, 2, 3)) / 255 for s in range(3)])
    np.testing.assert_allclose(stats["mean"], per_slide.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["sd"], per_slide.std(axis=0, ddof=1), rtol=1e-12)
    assert stats["slides"] == 3 and stats["tiles"] == 30


def test_colour_stats_read_an_evenly_spaced_sample_of_each_slide() -> None:
    read = []
    tiles = np.zeros((20, 3, 2, 2), np.uint8)
    colour_stats(lambda i: read.append(i) or torch.from_numpy(tiles[i]), np.repeat([0, 1], [16, 4]), per_slide=4)
    assert read == [0, 5, 10, 15, 16, 17, 18, 19]
    assert colour_stats(lambda i: torch.zeros(3, 2, 2, dtype=torch.uint8), np.zeros(0, int)) is None


def test_an_ensemble_pools_its_members_slides_as_one_mixture() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.05, (400, 3)), rng.normal(0.7, 0.03, (400, 3))
    stats = [{"mean": x.mean(0).tolist(), "sd": x.std(0).tolist(), "slides": 400} for x in (a, b)]
    pooled = pooled_stats(stats)
    both = np.concatenate([a, b])
    np.testing.assert_allclose(pooled["mean"], both.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pooled["sd"], both.std(0), rtol=1e-12)  # equal sizes: the exact mixture
    assert pooled_stats([stats[0], None]) is None


def test_the_distance_is_in_between_slide_sds_of_the_farthest_channel_with_a_floor() -> None:
    stats = {"mean": [0.8, 0.6, 0.7], "sd": [0.05, 0.1, 0.001], "slides": 10}
    assert colour_distance([0.9, 0.6, 0.7], stats) == pytest.approx(2.0)
    assert colour_distance([0.8, 0.2, 0.7], stats) == pytest.approx(4.0)
    assert colour_distance([0.8, 0.6, 0.71], stats) == pytest.approx(0.01 / MIN_SD)  # not 10 SDs of 0.001
