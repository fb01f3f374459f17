"""Cox proportional-hazards loss: the negative log partial likelihood, Breslow handling of ties.

Sign convention: the model's score is a **log-risk** (log relative hazard). A higher score means a
higher hazard, i.e. an earlier expected event and shorter survival. The c-index (``src.evaluation.metrics
.concordance_index``), the prediction tables (``{outcome}-risk``) and the Kaplan-Meier plots (high-risk
group = scores above the median) all read the score this way.

How this differs from Slideflow: Slideflow's (TensorFlow-only) ``negative_log_likelihood`` sorts times in
**ascending** order before the cumulative sum, so the "risk set" of an event at ``t_i`` is
``{j : t_j <= t_i}``; its learned score therefore *rises with survival time* (a survival score, not a risk
score), and its c-index treats a high score as long survival. Here the risk set is the textbook
``{j : t_j >= t_i}`` (as pycox and lifelines), so a Slideflow score corresponds to minus ours.
"""

from __future__ import annotations

import torch
from torch import nn


def cox_partial_likelihood_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Breslow log partial likelihood, averaged over events.

    ``loss = -1/n_events * sum_{i: event_i = 1} [risk_i - log sum_{j: t_j >= t_i} exp(risk_j)]``

    A higher ``risk`` means a higher hazard (shorter survival). For each event i the risk set is every
    sample still at risk at its time, ``{j : t_j >= t_i}``; samples with tied times share one risk set,
    which is Breslow's handling of ties. The inner sum is computed with log-sum-exp, so large scores do
    not overflow. A batch without events returns a zero that still carries a (zero) gradient, never NaN.
    Memory is O(batch²), which is fine for batches of up to a few thousand samples.

    Args:
        risk: (batch,) predicted log-risk scores.
        time: (batch,) follow-up times.
        event: (batch,) 1 for an observed event, 0 for censored.

    Returns:
        Scalar loss tensor.
    """
    risk, time, event = risk.reshape(-1), time.reshape(-1).to(risk.dtype), event.reshape(-1).to(risk.dtype)
    n_events = event.sum()
    if n_events <= 0:
        return risk.sum() * 0.0
    at_risk = time[None, :] >= time[:, None]  # row i: who is still at risk at t_i (always includes i)
    masked = risk[None, :].expand_as(at_risk).masked_fill(~at_risk, float("-inf"))
    log_risk_set = torch.logsumexp(masked, dim=1)
    return -((risk - log_risk_set) * event).sum() / n_events


class CoxLoss(nn.Module):
    """Cox loss for one outcome head (``loss=cox``).

    The head has one output, the log-risk score (higher = shorter survival); the target is the slide's
    (time, event) pair. See the module docstring for the sign convention.
    """

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            output: (batch, 1) risk scores.
            target: (batch, 2) time and event (0/1).
        """
        return cox_partial_likelihood_loss(output[:, 0], target[:, 0], target[:, 1])
