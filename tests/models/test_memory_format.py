"""The ``channels_last`` key: auto is on for GPUs and off for CPUs; bad values name the key; the net is laid out so."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from src.config import compose
from src.config.validate import validate
from src.errors import ConfigError
from src.losses.outcome_losses import build_losses
from src.models.examples import small_cnn
from src.models.memory_format import channels_last_setting
from src.models.tilenet import TileNet
from src.outcomes.categorical import CategoricalOutcome
from src.training.module import TileModule


@pytest.mark.parametrize(
    ("value", "accelerator", "expected"),
    [
        ("auto", "cpu", False),
        ("auto", "gpu", True),
        ("auto", "cuda", True),
        (True, "cpu", True),
        ("false", "gpu", False),
    ],
)
def test_channels_last_setting(value, accelerator, expected) -> None:
    assert channels_last_setting(value, accelerator) is expected


def test_auto_follows_cuda_when_the_accelerator_is_auto() -> None:
    assert channels_last_setting("auto", "auto") is torch.cuda.is_available()


def test_a_bad_value_is_rejected_at_validation_naming_the_key() -> None:
    assert compose([]).channels_last == "auto"
    with pytest.raises(ConfigError, match=r"channels_last='sideways'.*auto, true, false"):
        validate(compose(["channels_last=sideways"]))


def test_the_module_lays_its_net_out_channels_last_and_still_scales_uint8_tiles() -> None:
    net = TileNet(small_cnn(width=4, depth=1), [2])
    outcome = CategoricalOutcome.from_column(pd.DataFrame({"label": ["a", "b"]}), "label")
    module = TileModule(net, [outcome], build_losses(compose([]).loss, ["label"]), torch.optim.Adam, channels_last=True)
    module.on_fit_start()
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    tiles = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    scaled = net.scale(tiles).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(module.batch_outputs({"image": scaled, "clinical": None})[0], module(tiles, None)[0])
