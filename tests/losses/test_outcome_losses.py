"""Losses act as configured: class weights, linear losses on a standardised scale, custom losses by
_target_, and per-outcome losses summed with their weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from src.config import compose
from src.losses.examples import focal_loss
from src.losses.outcome_losses import CallableLoss, build_losses, fit_losses
from src.models.tilenet import TileNet
from src.outcomes.categorical import CategoricalOutcome
from src.outcomes.linear import LinearOutcome
from src.training.module import TileModule


def _logits_and_labels(seed: int = 0, n: int = 64, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator)
    labels = torch.randint(0, classes, (n, 1), generator=generator).float()
    return logits, labels


def test_class_weights_balanced_and_listed_act() -> None:
    cfg = compose(["loss.fn.class_weights=balanced"])
    (loss,) = build_losses(cfg.loss, ["y"])
    train_labels = np.array([0] * 30 + [1] * 10 + [2] * 5, dtype=np.float32)
    fit_losses([loss], [CategoricalOutcome("y", classes=["a", "b", "c"])], [train_labels[:, None]])
    counts = np.bincount(train_labels.astype(int))
    expected = torch.tensor(len(train_labels) / (3 * counts), dtype=torch.float32)
    torch.testing.assert_close(loss.fn.weight, expected)
    logits, labels = _logits_and_labels()
    weighted = loss.fn(logits, labels)
    torch.testing.assert_close(weighted, nn.functional.cross_entropy(logits, labels[:, 0].long(), weight=expected))
    (plain,) = build_losses(compose().loss, ["y"])
    assert not torch.isclose(weighted, plain.fn(logits, labels))

    (listed,) = build_losses(compose(["loss.fn.class_weights=[1.0,5.0,0.5]"]).loss, ["y"])
    manual = nn.functional.cross_entropy(logits, labels[:, 0].long(), weight=torch.tensor([1.0, 5.0, 0.5]))
    torch.testing.assert_close(listed.fn(logits, labels), manual)
    with pytest.raises(ValueError, match="3 values but the outcome has 2 classes"):
        listed.fn.fit(np.zeros(4), 2)


@pytest.mark.parametrize(
    ("option", "reference"),
    [
        ("mse", lambda o, t: nn.functional.mse_loss(o, t)),
        ("l1", lambda o, t: nn.functional.l1_loss(o, t)),
        ("huber", lambda o, t: nn.functional.huber_loss(o, t, delta=1.0)),
        ("smooth_l1", lambda o, t: nn.functional.smooth_l1_loss(o, t, beta=1.0)),
    ],
)
def test_linear_losses_on_the_training_sd_scale(option: str, reference) -> None:
    cfg = compose([f"loss={option}"])
    assert cfg.loss.kind == "linear"
    (loss,) = build_losses(cfg.loss, ["v"])
    train_values = np.random.default_rng(0).uniform(10, 90, 40).astype(np.float32)
    mean, scale = fit_losses([loss], [LinearOutcome("v")], [train_values[:, None]])
    sd = float(np.std(train_values))
    assert mean == [pytest.approx(float(train_values.mean()))] and scale == [pytest.approx(sd)]
    output, target = torch.randn(32, 1) * 20 + 50, torch.rand(32, 1) * 80 + 10
    torch.testing.assert_close(loss.fn(output, target), reference(output / sd, target / sd))


def test_linear_head_starts_at_the_training_mean() -> None:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    backbone.out_features = 4
    net = TileNet(backbone, [2, 1], output_mean=[0.0, 50.0], output_scale=[1.0, 20.0])
    nn.init.zeros_(net.heads[1].weight)
    nn.init.zeros_(net.heads[1].bias)
    _, linear = net(torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8))
    torch.testing.assert_close(linear, torch.full((5, 1), 50.0))
    assert {"output_mean", "output_scale"} <= set(net.state_dict())


def test_custom_loss_by_target() -> None:
    cfg = compose(["loss=custom_example"])
    (loss,) = build_losses(cfg.loss, ["y"])
    assert isinstance(loss.fn, CallableLoss)  # a plain function, held as a module by TileModule
    logits, labels = _logits_and_labels(1)
    torch.testing.assert_close(loss.fn(logits, labels), focal_loss(logits, labels, gamma=cfg.loss.fn.gamma))
    ce = nn.functional.cross_entropy(logits, labels[:, 0].long())
    torch.testing.assert_close(focal_loss(logits, labels, gamma=0.0), ce)
    assert focal_loss(logits, labels, gamma=2.0) < ce
    (other,) = build_losses(compose(["loss=custom_example", "loss.fn.gamma=0.0"]).loss, ["y"])
    torch.testing.assert_close(other.fn(logits, labels), ce)


def test_custom_loss_must_be_callable() -> None:
    loss_cfg = OmegaConf.create({"kind": "categorical", "fn": {"_target_": "builtins.str", "object": "not a loss"}})
    with pytest.raises(TypeError, match=r"outcome 'y'.*not callable"):
        build_losses(loss_cfg, ["y"])


def test_per_outcome_losses_are_summed_with_weights() -> None:
    cfg = compose(["experiment=demo_multi_outcome"])
    names = list(cfg.outcomes)
    assert names == ["tumor_type", "tumor_cellularity"]
    losses = build_losses(cfg.loss, names)
    assert [loss.kind for loss in losses] == ["categorical", "linear"]
    outcomes = [CategoricalOutcome(names[0], classes=["a", "b"]), LinearOutcome(names[1])]
    module = TileModule(nn.Identity(), outcomes, losses, optimizer=torch.optim.SGD)
    logits, labels = _logits_and_labels(2, classes=2)
    value, truth = torch.randn(64, 1) * 10 + 50, torch.rand(64, 1) * 80
    total = module._loss([logits, value], torch.cat([labels, truth], dim=1))
    expected = cfg.loss.weights.get(names[0], 1.0) * nn.functional.cross_entropy(logits, labels[:, 0].long())
    expected = expected + cfg.loss.weights[names[1]] * nn.functional.mse_loss(value, truth)
    torch.testing.assert_close(total, expected)

    cfg.loss.weights[names[1]] = 0.0  # a zero weight removes that outcome's term
    module = TileModule(nn.Identity(), outcomes, build_losses(cfg.loss, names), optimizer=torch.optim.SGD)
    total = module._loss([logits, value], torch.cat([labels, truth], dim=1))
    torch.testing.assert_close(total, nn.functional.cross_entropy(logits, labels[:, 0].long()))


def test_loss_config_naming_unknown_outcomes_is_rejected() -> None:
    cfg = compose(["experiment=demo_multi_outcome"])
    with pytest.raises(ValueError, match=r"loss.per_outcome names outcome\(s\) \['tumor_cellularity'\]"):
        build_losses(cfg.loss, ["tumor_type"])
    cfg = compose(["+loss.weights.tumour_type=2.0"])
    with pytest.raises(ValueError, match=r"loss.weights names outcome\(s\) \['tumour_type'\]"):
        build_losses(cfg.loss, ["tumor_type"])
