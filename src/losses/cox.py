"""Cox proportional-hazards loss (negative log partial likelihood, Breslow ties)."""

from __future__ import annotations

import torch
from torch import nn


def cox_partial_likelihood_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Breslow log partial likelihood, averaged over events.

    A higher ``risk`` means a higher hazard (shorter survival). For each event i the risk set is every
    sample still at risk at its time, ``{j : t_j >= t_i}`` (tied times share one risk set, which is
    Breslow's handling of ties). Computed with log-sum-exp for stability. A batch without events
    returns a zero that still carries a (zero) gradient, never NaN.

    Args:
        risk: (batch,) predicted log-risk scores.
        time: (batch,) follow-up times.
        event: (batch,) 1 for an observed event, 0 for censored.
    """
    risk, time, event = risk.reshape(-1), time.reshape(-1).to(risk.dtype), event.reshape(-1).to(risk.dtype)
    n_events = event.sum()
    if n_events <= 0:
        return risk.sum() * 0.0
    at_risk = time[None, :] >= time[:, None]  # row i: who is at risk at t_i
    masked = risk[None, :].expand_as(at_risk).masked_fill(~at_risk, float("-inf"))
    log_risk_set = torch.logsumexp(masked, dim=1)
    return -((risk - log_risk_set) * event).sum() / n_events


class CoxLoss(nn.Module):
    """Cox loss for one head; target is (batch, 2) = (time, event)."""

    kind = "cox"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``output`` (batch, 1) risk scores; ``target`` (batch, 2) time and event."""
        return cox_partial_likelihood_loss(output[:, 0], target[:, 0], target[:, 1])
