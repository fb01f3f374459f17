"""MIL models: padding changes no output, attention sums to 1 over real tiles, clinical inputs and heads.

The models are every MIL option of conf/model (tests/conf_options.py): a new one is tested with no test edited.
"""

from __future__ import annotations

import pytest
import torch

from src.models.mil.attention_mil import AttentionMIL
from src.models.mil.base import MilModel, masked_softmax
from src.models.mil.clam_sb import ClamSB
from tests.conf_options import conf_mil_model, mil_models

MODELS = mil_models()


def build(name: str, n_clinical: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    model = conf_mil_model(name, n_features=12, outcome_sizes=[3, 1], n_clinical=n_clinical, hidden_width=16)
    return model.eval()


@pytest.mark.parametrize("name", MODELS)
def test_masked_padding_changes_no_output(name: str) -> None:
    model = build(name, n_clinical=2)
    torch.manual_seed(1)
    bags = [torch.randn(n, 12) for n in (7, 3, 11)]
    clinical = torch.randn(3, 2)
    garbage = 1e3 * torch.randn(3, 20, 12)  # padding full of huge values
    padded, mask = garbage.clone(), torch.zeros(3, 20, dtype=torch.bool)
    for i, bag in enumerate(bags):
        padded[i, : len(bag)], mask[i, : len(bag)] = bag, True
    with torch.no_grad():
        batch_out, attention = model(padded, mask, clinical, return_attention=True)
        for i, bag in enumerate(bags):
            alone, alone_attention = model(bag[None], None, clinical[i : i + 1], return_attention=True)
            for out_batch, out_alone in zip(batch_out, alone, strict=True):
                torch.testing.assert_close(out_batch[i], out_alone[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(attention[i, : len(bag)], alone_attention[0], rtol=1e-5, atol=1e-6)
    # attention: a distribution over each bag's real tiles, zero on padding
    torch.testing.assert_close(attention.sum(1), torch.ones(3))
    assert (attention[~mask] == 0).all() and (attention >= 0).all()


@pytest.mark.parametrize("name", MODELS)
def test_outputs_have_one_tensor_per_outcome_and_use_clinical_inputs(name: str) -> None:
    model = build(name, n_clinical=2)
    features, mask = torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        first = model(features, mask, torch.zeros(2, 2))
        second = model(features, mask, torch.ones(2, 2))
    assert [tuple(o.shape) for o in first] == [(2, 3), (2, 1)]
    assert not torch.allclose(first[0], second[0])  # fused after pooling


def test_masked_softmax_equals_softmax_over_real_entries() -> None:
    scores = torch.randn(4, 9)
    mask = torch.rand(4, 9) > 0.4
    mask[:, 0] = True
    weights = masked_softmax(scores, mask)
    for b in range(4):
        torch.testing.assert_close(weights[b, mask[b]], torch.softmax(scores[b, mask[b]], 0))


def test_clam_instance_loss_trains_the_instance_classifiers() -> None:
    model = build("clam_sb").train()
    features, mask = torch.randn(4, 20, 12), torch.ones(4, 20, dtype=torch.bool)
    loss = model.auxiliary_loss(features, mask, torch.tensor([[0.0], [1.0], [2.0], [1.0]]))
    loss.backward()
    assert loss > 0 and model.instance_classifiers[0].weight.grad.abs().sum() > 0
    single = ClamSB(n_features=12, outcome_sizes=[1], hidden_width=8)  # a value or risk head: no instance loss
    assert single.auxiliary_loss(features, mask, torch.zeros(4, 2)) == 0


def test_drop_images_is_refused() -> None:
    with pytest.raises(ValueError, match="drop_images"):
        AttentionMIL(n_features=4, outcome_sizes=[2], drop_images=True)


SHARED_KEYS = [  # the base's tile embedding and heads (outcome_sizes=[3, 1]): checkpoints name them so
    "embed.0.weight",
    "embed.0.bias",
    "heads.output_mean",
    "heads.output_scale",
    "heads.heads.0.weight",
    "heads.heads.0.bias",
    "heads.heads.1.weight",
    "heads.heads.1.bias",
]
POOLING = {  # what the shipped models add: their pooling's layers (top-level names in the state_dict), pinned so
    # that checkpoints saved before keep loading; a new model's pooling may be anything
    "attention_mil": ["attention"],
    "clam_sb": ["attention", "instance_classifiers"],
    "transmil": ["cls_token", "layer1", "ppeg", "layer2", "norm"],
    "mean_pool": [],
}


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_keys_are_the_shared_embedding_and_heads_plus_the_pooling(name: str) -> None:
    keys = list(build(name).state_dict())
    assert [key for key in keys if key.split(".")[0] in ("embed", "heads")] == SHARED_KEYS
    pooling = [key.split(".")[0] for key in keys if key.split(".")[0] not in ("embed", "heads")]
    if name in POOLING:
        assert list(dict.fromkeys(pooling)) == POOLING[name]


@pytest.mark.parametrize("name", MODELS)
def test_a_state_dict_loads_into_a_model_built_with_another_seed_and_gives_the_same_outputs(name: str) -> None:
    model = build(name, n_clinical=2)
    torch.manual_seed(7)
    other = conf_mil_model(name, n_features=12, outcome_sizes=[3, 1], n_clinical=2, hidden_width=16).eval()
    other.load_state_dict(model.state_dict(), strict=True)
    features, mask, clinical = torch.randn(2, 6, 12), torch.ones(2, 6, dtype=torch.bool), torch.randn(2, 2)
    with torch.no_grad():
        for first, second in zip(model(features, mask, clinical), other(features, mask, clinical), strict=True):
            torch.testing.assert_close(first, second, rtol=0, atol=0)


class MaxPoolMIL(MilModel):
    """A new model writes only its pooling: the embedding, heads and forward are the base's."""

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1), None


def test_a_model_that_writes_only_its_pooling_gets_the_embedding_heads_and_clinical_fusion() -> None:
    torch.manual_seed(0)
    model = MaxPoolMIL(n_features=12, outcome_sizes=[3, 1], n_clinical=2, hidden_width=16).eval()
    assert list(model.state_dict()) == SHARED_KEYS
    features, mask = torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        outputs, attention = model(features, mask, torch.zeros(2, 2), return_attention=True)
        pooled = model.embed(features).amax(1)
        expected = model.heads(pooled, torch.zeros(2, 2))
    assert attention is None and [tuple(o.shape) for o in outputs] == [(2, 3), (2, 1)]
    for output, wanted in zip(outputs, expected, strict=True):
        torch.testing.assert_close(output, wanted)


def test_a_model_without_pooling_cannot_be_built() -> None:
    with pytest.raises(TypeError, match="pool"):
        MilModel(n_features=4, outcome_sizes=[2])
