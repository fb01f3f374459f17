"""TileNet scales uint8 tiles itself, with the mean and std its backbone declares (config, weights or default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from src.config import compose
from src.config.validate import validate
from src.models.backbone import timm_backbone
from src.models.examples import small_cnn
from src.models.scaling import DEFAULT_MEAN, DEFAULT_STD, check_input_stats
from src.models.tilenet import TileNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_net(*overrides: str) -> TileNet:
    """The configured TileNet (two-class head, no clinical inputs) in eval mode."""
    torch.manual_seed(0)
    return instantiate(compose(list(overrides)).model)(outcome_sizes=[2], n_clinical=0).eval()


def tiles(n: int = 4) -> torch.Tensor:
    """uint8 tiles holding every value 0-255."""
    image = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    image.view(-1)[:256] = torch.arange(256, dtype=torch.uint8)
    return image


def assert_stats(net: TileNet, mean: tuple, std: tuple) -> None:
    stats = net.input_stats()
    assert set(stats) == {"mean", "std"}
    assert stats["mean"] == pytest.approx(list(mean)) and stats["std"] == pytest.approx(list(std))


def manual(image: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    return (image.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_default_scaling_is_the_old_minus_one_to_one() -> None:
    net = build_net()
    x = tiles()
    old = x.float().div_(127.5).sub_(1.0)  # what TileDataset used to hand the model
    assert torch.equal(net.scale(x), old)  # bit for bit: the demo's figures do not move
    with torch.no_grad():
        expected = net.heads[0](net.backbone(old))
        torch.testing.assert_close(net(x)[0], expected, rtol=0, atol=1e-6)
    assert net.input_stats() == {"mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)}
    assert {"input_mean", "input_std"} <= set(net.state_dict())  # buffers: saved in every checkpoint


def test_configured_mean_and_std_are_applied() -> None:
    net = build_net(f"model.backbone.mean={list(IMAGENET_MEAN)}", f"model.backbone.std={list(IMAGENET_STD)}")
    assert net.backbone.input_mean == IMAGENET_MEAN and net.backbone.input_std == IMAGENET_STD
    assert_stats(net, IMAGENET_MEAN, IMAGENET_STD)
    x = tiles()
    expected = manual(x, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(net.scale(x), expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0], net.heads[0](net.backbone(expected)), rtol=0, atol=1e-5)


def test_a_custom_backbone_declares_its_own_scaling() -> None:
    plain = small_cnn(width=4)
    assert TileNet(plain, [2]).input_stats() == {"mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)}
    declared = small_cnn(width=4)
    declared.input_mean, declared.input_std = IMAGENET_MEAN, IMAGENET_STD
    x = tiles()
    torch.testing.assert_close(TileNet(declared, [2]).scale(x), manual(x, IMAGENET_MEAN, IMAGENET_STD))
    declared.input_std = (0.2, 0.0, 0.2)
    with pytest.raises(ValueError, match=r"Sequential\.input_std=.*must be positive"):
        TileNet(declared, [2])


def test_loaded_weights_bring_timm_pretrained_stats(tmp_path: Path) -> None:
    source = timm.create_model("test_efficientnet", num_classes=0)
    assert tuple(source.pretrained_cfg["mean"]) == IMAGENET_MEAN  # differs from the 0.5 default
    path = tmp_path / "effnet.pth"
    torch.save(source.state_dict(), path)
    net = build_net("model.backbone.name=test_efficientnet", f"model.backbone.weights_path={path}")
    assert_stats(net, IMAGENET_MEAN, IMAGENET_STD)
    random_init = build_net("model.backbone.name=test_efficientnet")
    assert random_init.input_stats() == {"mean": list(DEFAULT_MEAN), "std": list(DEFAULT_STD)}
    chosen = timm_backbone("test_efficientnet", weights_path=str(path), mean=[0.1, 0.2, 0.3], std=[1, 1, 1])
    assert chosen.input_mean == (0.1, 0.2, 0.3) and chosen.input_std == (1.0, 1.0, 1.0)  # the config wins


def test_our_checkpoint_as_weights_brings_its_own_scaling(tmp_path: Path) -> None:
    """Weights trained under some scaling keep it, rather than timm's pretrained_cfg for that name."""
    trained = TileNet(timm_backbone("test_efficientnet", mean=[0.6, 0.5, 0.4], std=[0.3, 0.2, 0.1]), [2])
    path = tmp_path / "epoch1.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in trained.state_dict().items()}}, path)
    backbone = timm_backbone("test_efficientnet", weights_path=str(path))
    assert backbone.input_mean == pytest.approx((0.6, 0.5, 0.4)) and backbone.input_std == pytest.approx(
        (0.3, 0.2, 0.1)
    )


def test_float_images_are_rejected() -> None:
    net = build_net()
    with pytest.raises(TypeError, match=r"uint8 .* tiles in 0-255 .* got torch\.float32"):
        net(tiles().float() / 127.5 - 1)


def test_clinical_only_models_have_no_input_scaling() -> None:
    net = TileNet(None, [2], n_clinical=3, drop_images=True)
    assert net.input_stats() is None and "input_mean" not in net.state_dict()
    assert net(torch.zeros(0), torch.randn(4, 3))[0].shape == (4, 2)


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        ("[0.5,0.5]", "[0.5,0.5,0.5]", r"model\.backbone\.mean=\[0\.5, 0\.5\]: expected 3 finite numbers"),
        ("[0.5,0.5,0.5]", "[0.5,0.0,0.5]", r"model\.backbone\.std=.*every channel's std must be positive"),
        ("[0.5,0.5,0.5]", "[0.5,-1,0.5]", r"model\.backbone\.std=.*must be positive"),
        ("[0.5,0.5,0.5]", "[0.5,0.5,0.5,0.5]", r"model\.backbone\.std=.*expected 3"),
        ("[a,b,c]", "[0.5,0.5,0.5]", r"model\.backbone\.mean=.*expected 3 numbers"),
        ("grey", "[0.5,0.5,0.5]", r"model\.backbone\.mean='grey': expected a list of 3 numbers"),
        ("0.5", "[0.5,0.5,0.5]", r"model\.backbone\.mean=0\.5: expected 3 numbers"),
        ("[0.5,0.5,0.5]", "null", r"model\.backbone\.mean is set but model\.backbone\.std is not"),
        ("null", "[0.5,0.5,0.5]", r"model\.backbone\.std is set but model\.backbone\.mean is not"),
    ],
)
def test_bad_mean_or_std_is_rejected_naming_the_key(mean: str, std: str, match: str) -> None:
    cfg = compose([f"model.backbone.mean={mean}", f"model.backbone.std={std}"])
    with pytest.raises(ValueError, match=match):  # before any data is read ...
        validate(cfg)
    with pytest.raises(InstantiationException, match=match):  # ... and when the backbone is built
        instantiate(cfg.model.backbone)


def test_check_input_stats_returns_floats() -> None:
    assert check_input_stats(None, None) is None
    assert check_input_stats([0, 1, 0], (1, 2, 3)) == ((0.0, 1.0, 0.0), (1.0, 2.0, 3.0))
