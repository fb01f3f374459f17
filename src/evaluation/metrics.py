"""Metrics per outcome and level: AUROC and accuracy, R², and Harrell's c-index.

Names follow ``{level}_{metric}/{outcome}``, e.g. ``slide_auroc/tumor_type``; the training loop
prefixes them with ``val/``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score, roc_auc_score

from src.data.outcomes import Outcome
from src.evaluation.predictions import LEVELS, output_columns, reduce_table


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
    """Harrell's c-index for risk scores (higher risk = earlier event).

    A pair (i, j) is comparable when the earlier time is an observed event; it is concordant when the
    earlier one has the higher risk; tied risks count 1/2. Pairs with tied times are comparable only
    when exactly one of them is an event, then the event must have the higher risk (as lifelines).
    Equals ``lifelines.utils.concordance_index(time, -risk, event)``.
    """
    time, risk, event = (np.asarray(a, dtype=float) for a in (time, risk, event))
    earlier = (time[:, None] < time[None, :]) & (event[:, None] == 1)
    tied = (time[:, None] == time[None, :]) & (event[:, None] == 1) & (event[None, :] == 0)
    comparable = earlier | tied
    n_pairs = comparable.sum()
    if n_pairs == 0:
        return float("nan")
    higher = risk[:, None] > risk[None, :]
    same = risk[:, None] == risk[None, :]
    return float((comparable & higher).sum() + 0.5 * (comparable & same).sum()) / n_pairs


def level_metrics(table: pd.DataFrame, outcome: Outcome) -> dict[str, float]:
    """Metrics of one outcome on one prediction table (any level)."""
    name = outcome.name
    if outcome.kind == "categorical":
        probs = table[output_columns(outcome)].to_numpy()
        return categorical_metrics(table[f"{name}-y_true"].to_numpy().astype(int), probs)
    if outcome.kind == "linear":
        y_true, y_pred = table[f"{name}-y_true"].to_numpy(), table[f"{name}-y_pred"].to_numpy()
        r2 = float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")
        return {"r2": r2, "mae": float(np.mean(np.abs(y_true - y_pred)))}
    return {
        "c_index": concordance_index(
            table[f"{name}-time"].to_numpy(), table[f"{name}-risk"].to_numpy(), table[f"{name}-event"].to_numpy()
        )
    }


def evaluate(tiles: pd.DataFrame, outcomes: Sequence[Outcome]) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """Metrics at tile, slide and patient level for every outcome.

    Returns:
        ``(metrics, tables)``: ``{"slide_auroc/tumor_type": 0.93, ...}`` and the prediction table of each
        level.
    """
    tables = {level: reduce_table(tiles, outcomes, level) for level in LEVELS}
    metrics = {}
    for level, table in tables.items():
        for outcome in outcomes:
            for metric, value in level_metrics(table, outcome).items():
                metrics[f"{level}_{metric}/{outcome.name}"] = value
    return metrics, tables
