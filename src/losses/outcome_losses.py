"""Which loss each outcome uses: the ``loss`` config group resolved per outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from torch import nn

LOSS_KINDS = ("categorical", "linear", "cox")


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


def build_losses(loss_cfg: Mapping[str, Any], outcomes: Sequence[str]) -> list[OutcomeLoss]:
    """Instantiate one loss per outcome, in outcome order.

    A custom loss is any ``_target_`` returning a callable ``fn(output, target) -> scalar tensor`` where
    ``output`` is the head's (batch, width) output and ``target`` the (batch, n_targets) encoded label.
    """
    kinds = loss_kinds(loss_cfg, outcomes)
    per_outcome = loss_cfg.get("per_outcome") or {}
    weights = loss_cfg.get("weights") or {}
    losses = []
    for name in outcomes:
        spec = per_outcome.get(name) or loss_cfg
        fn = instantiate(spec["fn"])
        losses.append(OutcomeLoss(name, kinds[name], fn, float(weights.get(name, 1.0))))
    return losses
