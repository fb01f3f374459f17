"""The Cox loss equals the Breslow partial likelihood written independently, and its gradients are right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

from src.config import compose
from src.losses.cox import CoxLoss, cox_partial_likelihood_loss
from src.losses.outcome_losses import build_losses, loss_kinds


def breslow_reference(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """-(1/d) Σ_{i: e_i=1} [r_i − log Σ_{j: t_j ≥ t_i} exp(r_j)], with plain loops (Breslow ties)."""
    total, n_events = 0.0, 0
    for i in range(len(risk)):
        if event[i] == 1:
            at_risk = [j for j in range(len(risk)) if time[j] >= time[i]]
            total += risk[i] - np.log(sum(np.exp(risk[j]) for j in at_risk))
            n_events += 1
    return -total / n_events


def tied_data(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random risks and times with many tied times (and tied times across events and censored cases)."""
    rng = np.random.default_rng(seed)
    time = rng.integers(0, 8, n).astype(float)
    event = (rng.random(n) < 0.6).astype(float)
    event[0] = 1.0
    risk = rng.normal(scale=2.0, size=n)
    return risk, time, event


@pytest.mark.parametrize("seed", range(5))
def test_loss_equals_breslow_formula_with_ties(seed: int) -> None:
    risk, time, event = tied_data(seed)
    assert len(np.unique(time)) < len(time)  # the data really has ties
    loss = cox_partial_likelihood_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert loss.item() == pytest.approx(breslow_reference(risk, time, event), abs=1e-6)


def test_loss_equals_lifelines_log_likelihood_at_fixed_coefficients() -> None:
    """Without tied times Breslow equals lifelines' Efron likelihood: compare at lifelines' fitted β."""
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 2))
    time = rng.exponential(np.exp(-(1.0 * x[:, 0] - 0.5 * x[:, 1])))
    event = (rng.random(n) < 0.7).astype(float)
    table = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "T": time, "E": event})
    cph = CoxPHFitter().fit(table, "T", "E")
    risk = x @ cph.params_[["x0", "x1"]].to_numpy()
    loss = cox_partial_likelihood_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert loss.item() * event.sum() == pytest.approx(-cph.log_likelihood_, abs=1e-6)


def test_gradcheck_float64_with_ties() -> None:
    risk, time, event = tied_data(7, n=25)
    risk = torch.tensor(risk, requires_grad=True)
    time_t, event_t = torch.tensor(time), torch.tensor(event)
    assert torch.autograd.gradcheck(lambda r: cox_partial_likelihood_loss(r, time_t, event_t), (risk,))


def test_no_event_batch_gives_zero_gradient_not_nan() -> None:
    risk = torch.randn(16, requires_grad=True)
    loss = cox_partial_likelihood_loss(risk, torch.rand(16), torch.zeros(16))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(risk.grad, torch.zeros(16))


def test_large_scores_are_stable() -> None:
    risk, time, event = tied_data(3)
    big = torch.tensor(risk * 500.0, requires_grad=True)
    loss = cox_partial_likelihood_loss(big, torch.tensor(time), torch.tensor(event))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    assert loss.item() == pytest.approx(breslow_reference_stable(risk * 500.0, time, event), rel=1e-9)


def breslow_reference_stable(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """The same formula with a max-shift per risk set, for huge scores."""
    total = 0.0
    for i in np.flatnonzero(event == 1):
        at_risk = risk[time >= time[i]]
        top = at_risk.max()
        total += risk[i] - (top + np.log(np.exp(at_risk - top).sum()))
    return -total / event.sum()


def test_higher_score_means_higher_risk() -> None:
    """Scores that rise as survival shortens fit better than the reverse (our sign convention)."""
    rng = np.random.default_rng(1)
    time = torch.tensor(rng.permutation(30).astype(float) + 1)
    event = torch.ones(30)
    assert cox_partial_likelihood_loss(-time, time, event) < cox_partial_likelihood_loss(time, time, event)


def test_module_reads_time_and_event_from_target() -> None:
    risk, time, event = tied_data(2)
    output = torch.tensor(risk)[:, None]
    target = torch.tensor(np.stack([time, event], axis=1))
    assert CoxLoss()(output, target).item() == pytest.approx(breslow_reference(risk, time, event), abs=1e-6)


def test_loss_config_builds_cox_loss() -> None:
    cfg = compose(["loss=cox", "outcomes=[os_time]", "event_header=os_event"])
    (loss,) = build_losses(cfg.loss, ["os_time"])
    assert loss.kind == "cox" and isinstance(loss.fn, CoxLoss)


def test_cox_with_other_outcomes_is_rejected() -> None:
    cfg = compose(["loss=cox"])
    with pytest.raises(ValueError, match="cox outcome cannot be combined with other outcomes"):
        loss_kinds(cfg.loss, ["os_time", "tumor_type"])
