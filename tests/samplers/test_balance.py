"""Balanced sampling: measured sampled proportions match each strategy's target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from src.outcomes.categorical import CategoricalOutcome
from src.outcomes.linear import LinearOutcome
from src.samplers.balance import tile_weights

# 4 slides: patient A has slides 0 and 1; classes 0,0,1,1; very unequal tile counts.
TILES = np.array([0] * 100 + [1] * 300 + [2] * 50 + [3] * 550)
PATIENTS = ["A", "A", "B", "C"]
CATEGORIES = [0, 0, 1, 1]


def sampled(strategy: str, n: int = 40000) -> np.ndarray:
    weights = tile_weights(strategy, TILES, PATIENTS, CATEGORIES)
    sampler = WeightedRandomSampler(weights, n, replacement=True, generator=torch.Generator().manual_seed(0))
    return TILES[np.fromiter(sampler, int)]


def test_slide_balance() -> None:
    share = np.bincount(sampled("slide"), minlength=4) / 40000
    np.testing.assert_allclose(share, 0.25, atol=0.01)


def test_patient_balance() -> None:
    slides = sampled("patient")
    share = np.array([np.isin(slides, [0, 1]).mean(), (slides == 2).mean(), (slides == 3).mean()])
    np.testing.assert_allclose(share, 1 / 3, atol=0.01)


def test_category_balance() -> None:
    slides = sampled("category")
    share = np.isin(slides, [0, 1]).mean()
    assert share == pytest.approx(0.5, abs=0.01)


def test_tile_balance_is_proportional_to_tiles() -> None:
    share = np.bincount(sampled("tile"), minlength=4) / 40000
    np.testing.assert_allclose(share, np.bincount(TILES) / len(TILES), atol=0.01)


def test_auto_and_none() -> None:
    assert CategoricalOutcome.resolve_balance("auto") == "category"
    assert LinearOutcome.resolve_balance("auto") == "patient"
    assert tile_weights("none", TILES, PATIENTS, CATEGORIES) is None
    with pytest.raises(ValueError, match="choose one of"):
        CategoricalOutcome.resolve_balance("tiles")
    with pytest.raises(ValueError, match="does not fit a linear outcome"):
        LinearOutcome.resolve_balance("category")
