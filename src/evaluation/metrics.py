"""Metrics per outcome and level: AUROC and accuracy, R², and Harrell's c-index.

Names follow ``{level}_{metric}/{outcome}``, e.g. ``slide_auroc/tumor_type``; the training loop
prefixes them with ``val/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score, roc_auc_score

from src.evaluation.predictions import LEVELS, reduce_table


def categorical_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """AUROC (binary, or macro one-vs-rest over classes present) and argmax accuracy.

    A class absent from ``y_true`` has no AUROC; if fewer than two classes are present AUROC is NaN.
    """
    metrics = {"accuracy": float(np.mean(probs.argmax(axis=1) == y_true))}
    present = np.unique(y_true)
    if len(present) < 2:
        metrics["auroc"] = float("nan")
    elif probs.shape[1] == 2:
        metrics["auroc"] = float(roc_auc_score(y_true == 1, probs[:, 1]))
    else:
        per_class = [roc_auc_score(y_true == c, probs[:, c]) for c in present]
        metrics["auroc"] = float(np.mean(per_class))
    return metrics


def concordance_index(time: np.ndarray, risk: np.ndarray, event: np.ndarray) -> float:
    """Harrell's c-index for risk scores (higher risk = earlier event), in O(n log n).

    A pair (i, j) is comparable when i has an observed event and either ``t_i < t_j``, or ``t_i == t_j``
    and j is censored (the censored case outlived the event). Pairs with tied times and two events, or
    where the earlier time is censored, are not comparable. A comparable pair is concordant when i has the
    higher risk; tied risks count 1/2. This equals ``lifelines.utils.concordance_index(time, -risk, event)``
    (lifelines expects a score that is high for long survival, hence the minus sign).

    Counting uses a Fenwick tree over risk ranks while sweeping the distinct times in order, so a tile
    table of a million tiles (n² pairs) is fine.

    Returns:
        The c-index, or NaN when there is no comparable pair (e.g. no event).
    """
    time, risk, event = (np.asarray(a, dtype=float).reshape(-1) for a in (time, risk, event))
    if not (len(time) == len(risk) == len(event)):
        raise ValueError(f"time, risk and event differ in length: {len(time)}, {len(risk)}, {len(event)}")
    if np.isnan(risk).any():
        return float("nan")
    died = event == 1
    ranks = np.unique(risk, return_inverse=True)[1].reshape(-1) + 1  # 1-based dense risk ranks
    tree = np.zeros(ranks.max(initial=0) + 1, dtype=np.int64)  # Fenwick tree: events seen so far, by rank

    def prefix(idx: np.ndarray) -> np.ndarray:  # events in the tree with rank <= idx
        idx, total = idx.copy(), np.zeros(len(idx), dtype=np.int64)
        while (live := idx > 0).any():
            total[live] += tree[idx[live]]
            idx[live] -= idx[live] & -idx[live]
        return total

    order = np.lexsort((~died, time))  # by time; events before censored cases at a tied time
    time_sorted = time[order]
    bounds = np.flatnonzero(np.diff(time_sorted)) + 1
    pairs = concordant = tied = 0
    n_pool = 0
    for group in np.split(order, bounds):
        rank = ranks[group]
        below, at_or_below = prefix(rank - 1), prefix(rank)
        # every member vs the events at earlier times
        pairs += n_pool * len(group)
        concordant += int((n_pool - at_or_below).sum())
        tied += int((at_or_below - below).sum())
        events, censored = rank[died[group]], rank[~died[group]]
        if len(events) and len(censored):  # censored at the same time as events: comparable
            sorted_events = np.sort(events)
            pairs += len(events) * len(censored)
            higher = len(events) - np.searchsorted(sorted_events, censored, side="right")
            same = np.searchsorted(sorted_events, censored, side="right") - np.searchsorted(
                sorted_events, censored, side="left"
            )
            concordant += int(higher.sum())
            tied += int(same.sum())
        idx = events.copy()
        while (live := (idx > 0) & (idx < len(tree))).any():
            np.add.at(tree, idx[live], 1)
            idx[live] += idx[live] & -idx[live]
            idx[~live] = 0
        n_pool += len(events)
    if pairs == 0:
        return float("nan")
    return (concordant + 0.5 * tied) / pairs


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R² (NaN for fewer than two values) and mean absolute error."""
    r2 = float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")
    return {"r2": r2, "mae": float(np.mean(np.abs(y_true - y_pred)))}


def evaluate(
    tiles: pd.DataFrame, outcomes: Sequence[Any], level: str = "tile"
) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """Metrics at tile, slide and patient level for every outcome (from ``level`` up).

    Args:
        tiles: The prediction table (tiles; or slide or patient bags for multiple-instance learning).
        outcomes: ``src.outcomes.Outcome`` objects; each computes its own metrics on a table.
        level: The level of the table's rows; only it and the levels above it are evaluated.

    Returns:
        ``(metrics, tables)``: ``{"slide_auroc/tumor_type": 0.93, ...}`` and the prediction table of each
        level.
    """
    levels = LEVELS[LEVELS.index(level) :]
    tables = {name: reduce_table(tiles, outcomes, name, rows=level) for name in levels}
    metrics = {}
    for level, table in tables.items():
        for outcome in outcomes:
            for metric, value in outcome.metrics(table).items():
                metrics[f"{level}_{metric}/{outcome.name}"] = value
    return metrics, tables
