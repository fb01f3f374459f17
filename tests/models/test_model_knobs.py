"""Model knobs act: hidden layers and width, dropout (also with no hidden layer), pooling, trainable_layers."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from src.config import compose
from src.losses.categorical import CrossEntropy
from src.losses.outcome_losses import OutcomeLoss
from src.outcomes.categorical import CategoricalOutcome
from src.training.module import TileModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build_net(*overrides: str, seed: int = 0) -> torch.nn.Module:
    """The TileNet that the config builds (two-class head, no clinical inputs)."""
    torch.manual_seed(seed)
    return instantiate(compose(list(overrides)).model)(outcome_sizes=[2], n_clinical=0)


def tiles(n: int = 8) -> torch.Tensor:
    """uint8 tiles, as the model takes them."""
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_hidden_layers_and_width() -> None:
    net = build_net("model.hidden_layers=2", "model.hidden_layer_width=7")
    linears = [m for m in net.hidden if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [7, 7]
    assert net.heads[0].in_features == 7
    assert build_net().heads[0].in_features == net.backbone.num_features  # no hidden layer: head on features
    assert net(tiles())[0].shape == (8, 2)


def test_dropout_acts_without_hidden_layers() -> None:
    net = build_net("model.dropout=0.5", "model.hidden_layers=0")
    x = tiles()
    net.train()
    torch.manual_seed(0)
    first = net(x)[0]
    second = net(x)[0]
    assert not torch.allclose(first, second)  # a fresh dropout mask per pass
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    plain = build_net("model.dropout=0.0")
    plain.train()
    assert torch.equal(plain(x)[0], plain(x)[0])  # the difference above is dropout's alone


@pytest.mark.parametrize("other", ["max", "avgmax"])
def test_pooling_changes_the_features(other: str) -> None:
    x = tiles()
    avg = build_net("model.backbone.pooling=avg").eval()
    pooled = build_net(f"model.backbone.pooling={other}").eval()
    assert not torch.allclose(avg.backbone(avg.scale(x)), pooled.backbone(pooled.scale(x)))


def test_catavgmax_pooling_doubles_the_feature_width() -> None:
    net = build_net("model.backbone.pooling=catavgmax").eval()
    features = net.backbone(net.scale(tiles()))
    assert features.shape[1] == net.backbone.num_features == 2 * build_net().backbone.num_features
    assert net(tiles())[0].shape == (8, 2)


def test_no_pooling_is_rejected() -> None:
    with pytest.raises(InstantiationException, match="pooling"):
        build_net("model.backbone.pooling=none")


def one_step(*overrides: str) -> tuple[dict, dict]:
    """State before and after one optimizer step of the configured model and optimizer."""
    cfg = compose(["optimizer.lr=0.01", *overrides])
    torch.manual_seed(0)
    net = instantiate(cfg.model)(outcome_sizes=[2], n_clinical=0)
    outcome = CategoricalOutcome("tumor_type", ["a", "b"])
    module = TileModule(
        net, [outcome], [OutcomeLoss("tumor_type", "categorical", CrossEntropy())], instantiate(cfg.optimizer)
    )
    optimizer = module.configure_optimizers()["optimizer"]
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    target = torch.tensor([[0.0], [1.0]] * 4)
    loss = module._loss(module(tiles(), None), target)
    loss.backward()
    optimizer.step()
    return before, module.state_dict()


def test_trainable_layers_freezes_all_but_the_last_stages() -> None:
    before, after = one_step("model.backbone.trainable_layers=1")  # test_resnet stages: act1, layer1..layer4
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = [k for k in before if k.startswith("net.backbone.") and not k.startswith("net.backbone.layer4.")]
    assert frozen and not changed & set(frozen)  # weights and BatchNorm statistics bit-identical
    assert any(k.startswith("net.backbone.layer4.") and k.endswith("weight") for k in changed)
    assert {"net.heads.0.weight", "net.heads.0.bias"} <= changed


def test_trainable_layers_zero_trains_everything() -> None:
    before, after = one_step("model.backbone.trainable_layers=0")
    assert not torch.equal(before["net.backbone.conv1.0.weight"], after["net.backbone.conv1.0.weight"])


def test_too_many_trainable_layers_is_rejected() -> None:
    with pytest.raises(InstantiationException, match="stages"):
        build_net("model.backbone.trainable_layers=9")
