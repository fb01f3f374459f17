"""Prediction tables at tile, slide and patient level.

Columns follow Slideflow: ``slide``, ``patient`` (+ ``loc_x``, ``loc_y`` for tiles), then per outcome
``{outcome}-y_true`` and ``{outcome}-y_pred{i}`` (softmax probability of class i) for categorical
outcomes, ``{outcome}-y_true`` and ``{outcome}-y_pred`` for linear ones, and ``{outcome}-time``,
``{outcome}-event`` and ``{outcome}-risk`` for cox outcomes (higher risk = shorter survival).
The slide value is the mean over the slide's tiles; the patient value is the mean over **all** the
patient's tiles (tile-weighted, Slideflow's definition), not a mean of slide means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from src.data.outcomes import Outcome

LEVELS = ("tile", "slide", "patient")


def output_columns(outcome: Outcome) -> list[str]:
    """Prediction columns of one outcome (averaged when reducing to slides/patients)."""
    if outcome.kind == "categorical":
        return [f"{outcome.name}-y_pred{i}" for i in range(len(outcome.classes))]
    if outcome.kind == "linear":
        return [f"{outcome.name}-y_pred"]
    return [f"{outcome.name}-risk"]


def truth_columns(outcome: Outcome) -> list[str]:
    """Ground-truth columns of one outcome (constant within a slide and a patient)."""
    if outcome.kind == "cox":
        return [f"{outcome.name}-time", f"{outcome.name}-event"]
    return [f"{outcome.name}-y_true"]


def tile_table(
    outcomes: Sequence[Outcome],
    outputs: Sequence[torch.Tensor | np.ndarray],
    targets: np.ndarray,
    slides: Sequence[str],
    patients: Sequence[str],
    locs: np.ndarray | None = None,
) -> pd.DataFrame:
    """Tile-level predictions.

    Args:
        outcomes: The outcomes, in head order.
        outputs: Raw head outputs per outcome, each (n_tiles, width) (logits for categorical).
        targets: (n_tiles, n_targets) encoded labels.
        slides: Slide of each tile.
        patients: Patient of each tile.
        locs: (n_tiles, 2) tile centres, optional.
    """
    table = {"slide": list(slides), "patient": list(patients)}
    if locs is not None:
        table["loc_x"], table["loc_y"] = locs[:, 0], locs[:, 1]
    start = 0
    for outcome, output in zip(outcomes, outputs, strict=True):
        output = torch.as_tensor(output).float()
        target = targets[:, start : start + outcome.n_targets]
        start += outcome.n_targets
        if outcome.kind == "categorical":
            probs = torch.softmax(output, dim=1).numpy()
            table[f"{outcome.name}-y_true"] = target[:, 0].astype(int)
            for i, column in enumerate(output_columns(outcome)):
                table[column] = probs[:, i]
        elif outcome.kind == "linear":
            table[f"{outcome.name}-y_true"] = target[:, 0]
            table[f"{outcome.name}-y_pred"] = output[:, 0].numpy()
        else:
            table[f"{outcome.name}-time"] = target[:, 0]
            table[f"{outcome.name}-event"] = target[:, 1].astype(int)
            table[f"{outcome.name}-risk"] = output[:, 0].numpy()
    return pd.DataFrame(table)


def reduce_table(tiles: pd.DataFrame, outcomes: Sequence[Outcome], level: str) -> pd.DataFrame:
    """Average tile predictions over each slide or patient (``level`` = ``slide`` or ``patient``)."""
    if level == "tile":
        return tiles
    if level not in LEVELS:
        raise ValueError(f"Unknown level '{level}'; choose one of {LEVELS}")
    keys = ["slide", "patient"] if level == "slide" else ["patient"]
    outputs = [c for o in outcomes for c in output_columns(o)]
    truths = [c for o in outcomes for c in truth_columns(o)]
    grouped = tiles.groupby(keys, sort=True)
    table = grouped[outputs].mean()
    table[truths] = grouped[truths].first()
    table["n_tiles"] = grouped.size()
    return table.reset_index()[[*keys, "n_tiles", *truths, *outputs]]
