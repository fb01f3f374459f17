"""Optimizer choice, l1 (a real penalty in the loss) and l2 (optimizer weight decay) change the update."""

from __future__ import annotations

import warnings

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate

from src.config import compose
from src.losses.categorical import CrossEntropy
from src.losses.outcome_losses import OutcomeLoss
from src.outcomes.categorical import CategoricalOutcome
from src.training.module import TileModule

OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop"]


def make_module(cfg, l1: float = 0.0) -> TileModule:
    torch.manual_seed(0)
    net = instantiate(cfg.model)(outcome_sizes=[2], n_clinical=0)
    outcome = CategoricalOutcome("tumor_type", ["a", "b"])
    loss = OutcomeLoss("tumor_type", "categorical", CrossEntropy())
    return TileModule(net, [outcome], [loss], optimizer=instantiate(cfg.optimizer), l1=l1)


def batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=g),
        "clinical": torch.zeros(8, 0),
        "target": torch.tensor([[0.0], [1.0]] * 4),
    }


def step(module: TileModule) -> dict[str, torch.Tensor]:
    """One optimizer step on the fixed batch (eval mode: no BatchNorm statistics, so only the update differs)."""
    optimizer = module.configure_optimizers()["optimizer"]
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Lightning Trainer
        loss = module.training_step(batch(), 0)
    loss.backward()
    optimizer.step()
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_config_builds_that_optimizer(name: str) -> None:
    cfg = compose([f"optimizer={name}", "optimizer.lr=0.003"])
    module = make_module(cfg)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is get_class(cfg.optimizer._target_)
    assert optimizer.param_groups[0]["lr"] == 0.003
    assert optimizer.param_groups[0]["weight_decay"] == cfg.optimizer.weight_decay


def test_optimizer_choice_changes_the_update() -> None:
    updates = {name: step(make_module(compose([f"optimizer={name}", "optimizer.lr=0.01"]))) for name in OPTIMIZERS}
    key = "net.heads.0.weight"
    for a in OPTIMIZERS:
        for b in OPTIMIZERS:
            if a < b:
                assert not torch.allclose(updates[a][key], updates[b][key]), (a, b)


def test_unknown_optimizer_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose(["optimizer=adamx"])
    for name in OPTIMIZERS:
        assert name in str(error.value)


def test_l1_is_a_real_penalty() -> None:
    cfg = compose(["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=false", "optimizer.lr=0.1"])
    plain, penalised = make_module(cfg), make_module(cfg, l1=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain.eval()
        penalised.eval()
        base = plain.training_step(batch(), 0)
        total = penalised.training_step(batch(), 0)
    weights = [p for p in penalised.parameters() if p.requires_grad and p.ndim > 1]
    assert total.item() == pytest.approx(base.item() + 0.01 * sum(p.abs().sum().item() for p in weights), rel=1e-5)
    # the gradient gains 0.01 * sign(w), so the SGD update of a weight moves by lr * 0.01 * sign(w) more
    before = {k: v.detach().clone() for k, v in penalised.named_parameters()}
    after_plain, after_l1 = step(make_module(cfg)), step(make_module(cfg, l1=0.01))
    key = "net.heads.0.weight"
    expected = -0.1 * 0.01 * torch.sign(before[key])
    torch.testing.assert_close(after_l1[key] - after_plain[key], expected, rtol=1e-4, atol=1e-6)


def test_l2_is_weight_decay() -> None:
    base = ["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=false", "optimizer.lr=0.1"]
    plain = step(make_module(compose(base)))
    decayed = step(make_module(compose([*base, "optimizer.weight_decay=0.5"])))
    start = {k: v.detach().clone() for k, v in make_module(compose(base)).named_parameters()}
    key = "net.heads.0.weight"
    torch.testing.assert_close(decayed[key] - plain[key], -0.1 * 0.5 * start[key], rtol=1e-4, atol=1e-6)
