"""The Python API on the wrong input: a MIL model given tiles, a tile model given a bag, a bag of another
feature width, tiles of another size or type. Each is a ValueError naming the model's kind, what it takes and
what it got (before: torch's shape or dtype error from inside the network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from src.data.clinical import ClinicalEncoder
from src.models.mil.attention_mil import AttentionMIL
from src.models.tilenet import TileNet
from src.outcomes import outcome_from_dict
from src.training.checkpoint import LoadedModel, predict, predict_bag

OUTCOMES = [outcome_from_dict({"name": "tumor_type", "kind": "categorical", "classes": ["a", "b"]})]
WIDTH = 8  # the MIL model's feature width
TILE_PX = 32


class TinyBackbone(nn.Module):
    """Mean colour → 4 features: any tile size fits it (so only our check can tell a wrong size)."""

    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.mean(dim=(2, 3)))


@pytest.fixture
def tile_model() -> LoadedModel:
    net = TileNet(TinyBackbone(), outcome_sizes=[2]).eval()
    params = {"tile_settings": {"tile_px": TILE_PX}, "net_kwargs": {}}
    return LoadedModel(net, OUTCOMES, ClinicalEncoder([]), params)


@pytest.fixture
def mil_model() -> LoadedModel:
    net = AttentionMIL(n_features=WIDTH, outcome_sizes=[2]).eval()
    params = {"net_kwargs": {"n_features": WIDTH}, "feature_bags": {"encoder": {"name": "tiny_random"}}}
    return LoadedModel(net, OUTCOMES, ClinicalEncoder([]), params)


def tiles(n: int = 2, side: int = TILE_PX) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8)


def test_the_right_inputs_predict(tile_model: LoadedModel, mil_model: LoadedModel) -> None:
    (probabilities,) = predict(tile_model, tiles(3))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    (bag_probabilities,), attention = predict_bag(mil_model, np.random.default_rng(0).normal(size=(5, WIDTH)))
    assert bag_probabilities.shape == (1, 2) and attention.shape == (5,)


def test_a_mil_model_given_tiles_names_what_it_takes(mil_model: LoadedModel) -> None:
    with pytest.raises(ValueError, match=r"predict\(\): the checkpoint is a MIL model \(AttentionMIL\) that takes "
                       r"one bag of \(n_tiles, 8\) float tile features from encoder tiny_random.*use predict_bag"
                       r".*got torch.uint8 of shape \(2, 3, 32, 32\)"):  # fmt: skip
        predict(mil_model, tiles())


def test_a_tile_model_given_a_bag_names_what_it_takes(tile_model: LoadedModel) -> None:
    bag = torch.zeros(5, WIDTH)
    with pytest.raises(ValueError, match=r"predict_bag\(\): the checkpoint is a tile model \(TileNet\) that takes "
                       r"uint8 \(batch, 3, 32, 32\) tiles, not a bag.*use predict\(model, images\); "
                       r"got torch.float32 of shape \(5, 8\)"):  # fmt: skip
        predict_bag(tile_model, bag)


def test_a_bag_of_another_width_names_both_widths(mil_model: LoadedModel) -> None:
    with pytest.raises(ValueError, match=r"trained on 8-wide features; this bag's features are 12 wide \(5, 12\): "
                       r"they come from another encoder"):  # fmt: skip
        predict_bag(mil_model, np.zeros((5, 12), np.float32))
    for bad in (np.zeros((0, WIDTH)), np.zeros((1, 5, WIDTH))):  # no tile; a batch instead of one bag
        with pytest.raises(ValueError, match=r"give one slide's bag, a 2-D \(n_tiles, n_features\) array"):
            predict_bag(mil_model, bad)


@pytest.mark.parametrize(
    "images",
    [
        tiles(side=48),  # another tile size: the backbone would take it and predict nonsense
        tiles().float() / 255,  # scaled floats: TileNet takes uint8
        tiles()[:, :2],  # two channels
        tiles()[0],  # one tile without its batch axis
    ],
)
def test_tiles_the_model_was_not_trained_on_are_refused(tile_model: LoadedModel, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"the checkpoint is a tile model \(TileNet\) that takes uint8 "
                       r"\(batch, 3, 32, 32\) tiles; got torch\.\w+ of shape"):  # fmt: skip
        predict(tile_model, images)
