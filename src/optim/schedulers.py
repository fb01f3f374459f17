"""Learning-rate schedules for the ``scheduler`` config group.

A schedule is a ``_partial_`` callable taking the optimizer. One that also takes ``total_steps`` gets the
number of scheduler steps of the whole run (optimizer steps, or epochs when ``scheduler.interval=epoch``)
from :func:`build_scheduler`, so a schedule can span the run without the user counting steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR


def exponential(optimizer: Optimizer, decay: float = 0.95, decay_steps: int = 100000) -> LRScheduler:
    """Slideflow's ``learning_rate_decay``: multiply the learning rate by ``decay`` every ``decay_steps`` steps.

    This is Slideflow's torch ``ExponentialLR(gamma=decay)`` stepped every ``learning_rate_decay_steps``
    global steps (and TF's ``ExponentialDecay(staircase=True)``): after ``s`` optimizer steps the rate is
    ``lr · decay ** (s // decay_steps)``.

    Raises:
        ValueError: ``decay`` outside (0, 1] or ``decay_steps`` < 1.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"scheduler.fn.decay={decay} must be in (0, 1] (1 = constant learning rate)")
    if int(decay_steps) < 1:
        raise ValueError(f"scheduler.fn.decay_steps={decay_steps} must be a positive number of steps")
    return StepLR(optimizer, step_size=int(decay_steps), gamma=float(decay))


def cosine(
    optimizer: Optimizer, t_max: int | None = None, eta_min: float = 0.0, total_steps: int | None = None
) -> LRScheduler:
    """Cosine annealing from the optimizer's learning rate to ``eta_min`` over ``t_max`` scheduler steps.

    Args:
        optimizer: The optimizer.
        t_max: Length of the half cosine in scheduler steps; ``None`` spans the whole run (``total_steps``).
        eta_min: Final learning rate.
        total_steps: Scheduler steps in the whole run (filled in by :func:`build_scheduler`).
    """
    length = t_max if t_max is not None else total_steps
    if not length or int(length) < 1:
        raise ValueError("cosine schedule needs t_max or the run's total_steps")
    return CosineAnnealingLR(optimizer, T_max=int(length), eta_min=float(eta_min))


def build_scheduler(factory: Callable[..., LRScheduler], optimizer: Optimizer, total_steps: float) -> LRScheduler:
    """Call a scheduler partial, passing ``total_steps`` when its signature accepts it."""
    try:
        accepts = "total_steps" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        accepts = False
    return factory(optimizer, total_steps=int(total_steps)) if accepts else factory(optimizer)
