"""Kaplan-Meier curves of validation patients split at the median predicted risk, with a log-rank test."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from src.evaluation.metrics import concordance_index
from src.evaluation.plots import save_figure


def risk_groups(risk: np.ndarray) -> np.ndarray:
    """True for the high-risk group: a risk strictly above the median (ties at the median go low)."""
    risk = np.asarray(risk, dtype=float)
    return risk > np.median(risk)


def logrank_p(time: np.ndarray, event: np.ndarray, high: np.ndarray) -> float:
    """Log-rank p-value between the high- and low-risk groups (NaN when a group is empty)."""
    from lifelines.statistics import logrank_test

    if high.all() or not high.any():
        return float("nan")
    result = logrank_test(time[high], time[~high], event_observed_A=event[high], event_observed_B=event[~high])
    return float(result.p_value)


def km_plot(table: pd.DataFrame, outcome: str, path: Path, title: str) -> Path:
    """Kaplan-Meier curves of the high- and low-risk halves of ``table`` (one row per patient).

    The title gets a second line with the log-rank p-value and the c-index of ``table``.

    Args:
        table: Prediction table with ``{outcome}-time``, ``{outcome}-event`` and ``{outcome}-risk``.
        outcome: The cox outcome's time column.
        path: PNG to write.
        title: First title line.
    """
    from lifelines import KaplanMeierFitter

    name = outcome
    time = table[f"{name}-time"].to_numpy(float)
    event = table[f"{name}-event"].to_numpy(int)
    risk = table[f"{name}-risk"].to_numpy(float)
    high = risk_groups(risk)
    p_value = logrank_p(time, event, high)
    c_index = concordance_index(time, risk, event)

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for label, members, color in (("low risk", ~high, "tab:blue"), ("high risk", high, "tab:red")):
        if not members.any():
            continue
        kmf = KaplanMeierFitter(label=f"{label} (n={members.sum()}, {event[members].sum()} events)")
        kmf.fit(time[members], event[members])
        kmf.plot_survival_function(
            ax=ax, ci_show=True, ci_alpha=0.12, show_censors=True, color=color, censor_styles={"ms": 7}
        )
    p_text = f"log-rank p = {p_value:.3g}" if not np.isnan(p_value) else "log-rank p: n/a (one group)"
    c_text = f"patient c-index {c_index:.3f}" if not np.isnan(c_index) else "patient c-index n/a"
    ax.set_title(f"{title}\n{p_text}, {c_text} (n={len(table)} patients, split at median risk)", fontsize=10)
    ax.set(xlabel=f"{name} (censored cases marked +)", ylabel="Survival probability", ylim=(0, 1.05))
    ax.set_xlim(left=0)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path
