"""Prediction tables at tile, slide and patient level.

Columns follow Slideflow: ``slide``, ``patient`` (+ ``loc_x``, ``loc_y`` for tiles), then each outcome's
truth and prediction columns, which its kind names (``src.outcomes``): ``{outcome}-y_true`` and
``{outcome}-y_pred{i}`` (softmax probability of class i) for categorical outcomes, ``{outcome}-y_true``
and ``{outcome}-y_pred`` for linear ones, ``{outcome}-time``, ``{outcome}-event`` and ``{outcome}-risk``
for cox outcomes (higher risk = shorter survival). The slide value is the mean over the slide's tiles;
the patient value is the mean over **all** the patient's tiles (tile-weighted, Slideflow's definition),
not a mean of slide means. Tables whose rows are already slides (multiple-instance learning: one prediction
per bag) reduce to patients by the mean over the patient's slides, with ``n_tiles`` summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

LEVELS = ("tile", "slide", "patient")


def tile_table(
    outcomes: Sequence[Any],
    outputs: Sequence[torch.Tensor | np.ndarray],
    target_parts: Sequence[np.ndarray],
    slides: Sequence[str] | np.ndarray,
    patients: Sequence[str] | np.ndarray,
    locs: np.ndarray | None = None,
) -> pd.DataFrame:
    """Tile-level predictions.

    Args:
        outcomes: ``src.outcomes.Outcome`` objects, in head order.
        outputs: Raw head outputs per outcome, each (n_tiles, width) (logits for categorical).
        target_parts: Per outcome, its (n_tiles, n_targets) encoded labels (``TargetLayout.split``).
        slides: Slide of each tile.
        patients: Patient of each tile.
        locs: (n_tiles, 2) tile centres, optional.
    """
    table: dict[str, Any] = {"slide": list(slides), "patient": list(patients)}
    if locs is not None:
        table["loc_x"], table["loc_y"] = locs[:, 0], locs[:, 1]
    for outcome, output, part in zip(outcomes, outputs, target_parts, strict=True):
        table.update(outcome.tile_columns(torch.as_tensor(output).float(), part))
    return pd.DataFrame(table)


def reduce_table(tiles: pd.DataFrame, outcomes: Sequence[Any], level: str, rows: str = "tile") -> pd.DataFrame:
    """Average predictions over each slide or patient (``level`` = ``slide`` or ``patient``).

    Args:
        tiles: The prediction table; its rows are at level ``rows``.
        outcomes: The outcomes (their prediction and truth columns).
        level: The level to reduce to; a level at or below ``rows`` returns the table as it is.
        rows: The level of the table's rows: ``tile`` (the default), or ``slide`` (one row per slide bag, with an
            ``n_tiles`` column, which is summed).
    """
    if level not in LEVELS:
        raise ValueError(f"Unknown level '{level}'; choose one of {LEVELS}")
    if LEVELS.index(level) <= LEVELS.index(rows):
        return tiles
    keys = ["slide", "patient"] if level == "slide" else ["patient"]
    outputs = [c for o in outcomes for c in o.output_columns()]
    truths = [c for o in outcomes for c in o.truth_columns()]
    grouped = tiles.groupby(keys, sort=True)
    table = grouped[outputs].mean()
    table[truths] = grouped[truths].first()
    table["n_tiles"] = grouped["n_tiles"].sum() if rows != "tile" else grouped.size()
    return table.reset_index()[[*keys, "n_tiles", *truths, *outputs]]
