"""Which loss each outcome uses: the ``loss`` config group resolved per outcome."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from src.data.outcomes import Outcome

LOSS_KINDS = ("categorical", "linear", "cox")


class CallableLoss(nn.Module):
    """Wraps a plain callable loss (e.g. a ``_partial_`` function) so the model can hold it as a module."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Call the wrapped loss."""
        return self.fn(output, target)

    def extra_repr(self) -> str:
        return repr(self.fn)


@dataclass
class OutcomeLoss:
    """The loss of one outcome head."""

    outcome: str
    kind: str
    fn: nn.Module
    weight: float = 1.0


def loss_kinds(loss_cfg: Mapping[str, Any], outcomes: Sequence[str]) -> dict[str, str]:
    """Outcome → kind (``categorical``/``linear``/``cox``) from the loss config, without building anything.

    ``loss.kind`` applies to every outcome unless ``loss.per_outcome.<name>.kind`` overrides it.
    """
    per_outcome = loss_cfg.get("per_outcome") or {}
    unknown = sorted(set(per_outcome) - set(outcomes))
    if unknown:
        raise ValueError(f"loss.per_outcome names outcome(s) {unknown} that are not in outcomes={list(outcomes)}")
    kinds = {}
    for name in outcomes:
        kind = (per_outcome.get(name) or {}).get("kind", loss_cfg.get("kind"))
        if kind not in LOSS_KINDS:
            raise ValueError(f"Loss kind for outcome '{name}' is {kind!r}; choose one of {LOSS_KINDS}")
        kinds[name] = kind
    if "cox" in kinds.values() and len(outcomes) > 1:
        raise ValueError(
            f"A cox outcome cannot be combined with other outcomes in one model (outcomes={list(outcomes)}); "
            "train one model per outcome, e.g. loss=cox outcomes=[os_time] event_header=os_event"
        )
    return kinds


def check_loss_fits(loss_cfg: Mapping[str, Any], outcomes: Sequence[Outcome]) -> None:
    """Raise when an outcome's labels were encoded as another kind than its loss expects.

    Raises:
        ValueError: naming the outcome, both kinds and how to fix it.
    """
    kinds = loss_kinds(loss_cfg, [o.name for o in outcomes])
    for outcome in outcomes:
        if kinds[outcome.name] != outcome.kind:
            raise ValueError(
                f"Outcome '{outcome.name}' is labelled {outcome.kind} but its loss is {kinds[outcome.name]}: "
                f"build the labels with dataset.labels(..., kind=loss_kinds(hp.loss, outcomes)) or pick a "
                f"{outcome.kind} loss (loss.kind / loss.per_outcome.{outcome.name})"
            )


def build_losses(loss_cfg: Mapping[str, Any], outcomes: Sequence[str]) -> list[OutcomeLoss]:
    """Instantiate one loss per outcome, in outcome order.

    ``loss.fn`` is used for every outcome unless ``loss.per_outcome.<name>`` gives its own ``{kind, fn}``;
    ``loss.weights.<name>`` (default 1) weighs the outcome's term in the summed loss.

    A custom loss is any ``_target_`` that instantiates to a callable ``fn(output, target) -> scalar
    tensor``, where ``output`` is the head's float (batch, width) output (logits for categorical) and
    ``target`` the float (batch, n_targets) encoded label (class index; value; time and event). A plain
    function takes ``_partial_: true``; see ``src.losses.examples`` and ``conf/loss/custom_example.yaml``.
    """
    kinds = loss_kinds(loss_cfg, outcomes)
    per_outcome = loss_cfg.get("per_outcome") or {}
    weights = loss_cfg.get("weights") or {}
    unknown = sorted(set(weights) - set(outcomes))
    if unknown:
        raise ValueError(f"loss.weights names outcome(s) {unknown} that are not in outcomes={list(outcomes)}")
    losses = []
    for name in outcomes:
        spec = per_outcome.get(name) or loss_cfg
        if not spec.get("fn"):
            raise ValueError(f"loss.per_outcome.{name} needs a `fn` (a _target_ node), e.g. that of conf/loss/mse.yaml")
        fn = instantiate(spec["fn"])
        if not callable(fn):
            raise TypeError(f"The loss for outcome '{name}' instantiated to {fn!r}, which is not callable")
        if not isinstance(fn, nn.Module):
            fn = CallableLoss(fn)
        weight = float(weights.get(name, 1.0))
        if weight < 0:
            raise ValueError(f"loss.weights.{name}={weight} must not be negative")
        losses.append(OutcomeLoss(name, kinds[name], fn, weight))
    return losses


def fit_losses(
    losses: Sequence[OutcomeLoss], outcomes: Sequence[Outcome], targets: np.ndarray
) -> tuple[list[float], list[float]]:
    """Fit the losses on the training slides' labels and return the heads' output scaling.

    Categorical losses with a ``fit(labels, n_classes)`` set their class weights (``balanced``); linear
    outcomes are learned on a standardised scale, so their losses' ``fit(values)`` get the values and
    the head of each linear outcome outputs ``mean + sd * z`` with the training mean and sd.

    Args:
        losses: One per outcome, in outcome order.
        outcomes: The outcomes.
        targets: (n_training_slides, n_targets) encoded labels.

    Returns:
        ``(output_mean, output_scale)``, one value per outcome (0 and 1 for categorical and cox).
    """
    means, scales, start = [], [], 0
    for outcome, loss in zip(outcomes, losses, strict=True):
        values = targets[:, start]
        start += outcome.n_targets
        mean, scale = 0.0, 1.0
        if outcome.kind == "categorical" and hasattr(loss.fn, "fit"):
            loss.fn.fit(values, len(outcome.classes))
        elif outcome.kind == "linear":
            mean, scale = float(np.mean(values)), float(np.std(values)) or 1.0
            if hasattr(loss.fn, "fit"):
                loss.fn.fit(values)
        means.append(mean)
        scales.append(scale)
    return means, scales
