"""What params.json records about the training tiles' colour (``tile_colour``), whatever the tile source."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from src.training.params import training_colour


class Tiles:
    """A tile source: ``read_image`` gives one colour per slide, or raises as a remote stream does."""

    def __init__(self, slide_idx: np.ndarray, remote: bool = False) -> None:
        self.slide_idx, self.remote = slide_idx, remote

    def read_image(self, tile: int) -> torch.Tensor:
        if self.remote:
            raise RuntimeError("dataset=shards_stream: these slides' tars are remote")
        return torch.full((3, 4, 4), 51 * (1 + int(self.slide_idx[tile])), dtype=torch.uint8)


def data(tiles: object) -> SimpleNamespace:
    return SimpleNamespace(train=SimpleNamespace(data=tiles))


def test_training_colour_is_recorded_from_the_training_tiles() -> None:
    stats = training_colour(data(Tiles(np.repeat([0, 1], 5))))
    assert stats["slides"] == 2 and stats["mean"] == pytest.approx([0.3] * 3)  # (0.2 + 0.4) / 2
    assert stats["sd"] == pytest.approx([np.std([0.2, 0.4], ddof=1)] * 3)


def test_no_colour_without_random_access_to_tiles() -> None:
    assert training_colour(data(Tiles(np.repeat([0, 1], 5), remote=True))) is None  # training goes on
    assert training_colour(data(SimpleNamespace(slide_idx=np.arange(3)))) is None  # clinical-only, MIL bags
    assert training_colour(SimpleNamespace()) is None
