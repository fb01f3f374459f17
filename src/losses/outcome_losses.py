"""Which loss each outcome uses: the ``loss`` config group resolved per outcome."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from src.errors import ConfigError
from src.outcomes import Outcome, outcome_kind


class CallableLoss(nn.Module):
    """Wraps a plain callable loss (e.g. a ``_partial_`` function) so the model can hold it as a module."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Call the wrapped loss."""
        return self.fn(output, target)

    def extra_repr(self) -> str:
        """The wrapped callable, in the module's repr."""
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
        key = f"loss.per_outcome.{name}.kind" if name in per_outcome else "loss.kind"
        try:
            cls = outcome_kind(str(kind))
        except ConfigError as err:
            raise ConfigError(f"{key}={kind!r} (outcome '{name}'): {err}") from None
        if not cls.combinable and len(outcomes) > 1:
            raise ConfigError(
                f"A {kind} outcome cannot be combined with other outcomes in one model ('{name}' in "
                f"outcomes={list(outcomes)}); train one model per outcome, e.g. "
                "loss=cox outcomes=[os_time] event_header=os_event"
            )
        kinds[name] = str(kind)
    return kinds


def check_loss_fits(loss_cfg: Mapping[str, Any], outcomes: Sequence[Outcome]) -> None:
    """Raise when an outcome's labels were encoded as another kind than its loss expects.

    Raises:
        ValueError: naming the outcome, both kinds and how to fix it.
    """
    kinds = loss_kinds(loss_cfg, [o.name for o in outcomes])
    for outcome in outcomes:
        if kinds[outcome.name] != outcome.kind_spec():
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
        fn_cfg = spec.get("fn") or outcome_kind(kinds[name]).default_loss  # a kind alone: its default loss
        fn = instantiate(fn_cfg)
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
    losses: Sequence[OutcomeLoss], outcomes: Sequence[Outcome], target_parts: Sequence[np.ndarray]
) -> tuple[list[float], list[float]]:
    """Fit the losses on the training slides' labels and return the heads' output scaling.

    Each outcome kind fits its loss (``Outcome.fit_head``): categorical losses with a
    ``fit(labels, n_classes)`` set their class weights (``balanced``); linear outcomes are learned on a
    standardised scale, so their head outputs ``mean + sd * z`` with the training mean and sd.

    Args:
        losses: One per outcome, in outcome order.
        outcomes: The outcomes.
        target_parts: Per outcome, the training slides' (n_slides, n_targets) encoded labels.

    Returns:
        ``(output_mean, output_scale)``, one value per outcome.
    """
    scaling = [o.fit_head(loss.fn, part) for o, loss, part in zip(outcomes, losses, target_parts, strict=True)]
    return [mean for mean, _ in scaling], [scale for _, scale in scaling]
