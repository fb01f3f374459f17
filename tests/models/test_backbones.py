"""Custom architectures by _target_, and backbone weights from a local timm/torchvision state dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from hydra.utils import instantiate
from torch import nn

from src.config import compose
from src.models.backbone import timm_backbone
from src.models.examples import small_cnn
from src.models.tilenet import TileNet, feature_width


def test_custom_backbone_by_target() -> None:
    cfg = compose(["model=custom_example", "model.backbone.width=8", "model.hidden_layers=1"])
    net = instantiate(cfg.model)(outcome_sizes=[2, 1], n_clinical=3)
    assert isinstance(net, TileNet)
    convs = [m for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]  # built by small_cnn with the config's arguments
    assert feature_width(net.backbone) == 32 and net.hidden[0].in_features == 32 + 3
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    clinical = torch.randn(4, 3)
    outputs = net(images, clinical)
    assert [tuple(o.shape) for o in outputs] == [(4, 2), (4, 1)]
    net.eval()  # clinical inputs enter after the backbone: changing them changes the outputs
    assert not torch.allclose(net(images, clinical)[0], net(images, clinical + 1)[0])
    net.train()
    sum(o.sum() for o in outputs).backward()
    assert convs[0].weight.grad is not None and convs[0].weight.grad.abs().sum() > 0


def test_custom_backbone_without_a_width_is_rejected() -> None:
    with pytest.raises(AttributeError, match="Sequential must expose its output width as `num_features`"):
        TileNet(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), [2])


def test_timm_state_dict_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=7)  # with a classifier, which must be skipped
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    cfg = compose([f"model.backbone.weights_path={path}"])
    backbone = instantiate(cfg.model.backbone)
    fresh = instantiate(compose().model.backbone)
    loaded = backbone.state_dict()
    assert set(loaded) == {k for k in source.state_dict() if not k.startswith("fc.")}
    for key, value in loaded.items():
        torch.testing.assert_close(value, source.state_dict()[key], msg=key)
    differs = [k for k, v in fresh.state_dict().items() if v.is_floating_point() and not torch.equal(v, loaded[k])]
    assert differs, "a fresh backbone already equals the file: the test would not notice an ignored weights_path"


def test_custom_backbone_loads_local_weights(tmp_path: Path) -> None:
    source = small_cnn(width=4)
    path = tmp_path / "cnn.pt"
    torch.save(source.state_dict(), path)
    cfg = compose(["model=custom_example", "model.backbone.width=4", f"model.backbone.weights_path={path}"])
    backbone = instantiate(cfg.model.backbone)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key], msg=key)


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"weights file not found: .*nowhere\.pth"):
        timm_backbone("test_resnet", weights_path=str(tmp_path / "nowhere.pth"))
