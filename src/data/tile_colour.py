"""The colour of a model's training tiles, and how far a new slide's tiles lie from it.

A slide's colour is the mean of its tiles' per-channel (R, G, B) means, in [0, 1] units, on the tiles as the
model reads them (as the shards store them, before stain normalization). Training records, with each model,
the mean and the standard deviation *between training slides* of that colour (:func:`colour_stats`, from an
evenly spaced sample of each slide's tiles: the stain, scanner and tissue variation the model has seen).
:func:`colour_distance` is how many of those standard deviations a new slide lies from the training mean in
its farthest channel; a slide beyond :data:`FAR_SDS` is unlike every slide the model was trained on (another
stain, a fluorescence or dark-field scan, an inverted or mis-scanned file), and its predictions mean little.

Why 4: if a new slide of the same kind as the ``n`` training slides lies ``t``-distributed from their mean
(``n - 1`` degrees of freedom, scaled by ``sqrt(1 + 1/n)``), it is beyond 4 SDs in one of the 3 channels for at
most 1.2 % of such slides with ``n = 10``, 0.3 % with ``n = 20`` and 0.07 % with ``n = 50`` (a union bound over
the channels), while a change of stain or illumination moves the colour by tens of SDs. :data:`MIN_SD` (0.02,
5 grey levels) keeps a very uniform training set (one site, one scanner) from flagging differences the eye
cannot see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

FAR_SDS = 4.0  # a slide farther than this many between-slide SDs (in any channel) is flagged
MIN_SD = 0.02  # floor of the between-slide SD, in [0, 1] units
TILES_PER_SLIDE = 8  # tiles read per training slide
MAX_TILES = 2048  # at most this many in all (fewer per slide for a large cohort)


def tile_means(images: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` float64 per-channel means in [0, 1] of uint8 ``(n, 3, H, W)`` tiles."""
    return images[:, :3].to(torch.float64).mean(dim=(2, 3)) / 255.0


def colour_stats(
    read_image: Callable[[int], torch.Tensor], slide_idx: np.ndarray, per_slide: int = TILES_PER_SLIDE
) -> dict[str, Any] | None:
    """The training slides' colour: ``{"mean": [r, g, b], "sd": [r, g, b], "slides": n, "tiles": m}``.

    Args:
        read_image: Tile index → uint8 ``(3, H, W)`` tile, as the model reads it (before normalization).
        slide_idx: ``(n_tiles,)`` slide of each tile.
        per_slide: Tiles read per slide (evenly spaced over its tiles; fewer when the cohort is large).

    Returns:
        None when there are no tiles.
    """
    slide_idx = np.asarray(slide_idx)
    slides = np.unique(slide_idx)
    if not len(slides):
        return None
    per_slide = max(1, min(per_slide, MAX_TILES // len(slides)))
    slide_colours, tiles = [], 0
    for slide in slides:
        indices = np.flatnonzero(slide_idx == slide)
        chosen = indices[np.unique(np.linspace(0, len(indices) - 1, min(per_slide, len(indices))).round().astype(int))]
        means = tile_means(torch.stack([read_image(int(i)) for i in chosen]))
        slide_colours.append(means.mean(dim=0).numpy())
        tiles += len(chosen)
    colours = np.asarray(slide_colours)
    sd = colours.std(axis=0, ddof=1) if len(colours) > 1 else np.zeros(3)
    return {"mean": colours.mean(axis=0).tolist(), "sd": sd.tolist(), "slides": len(colours), "tiles": tiles}


def pooled_stats(stats: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The colour of several models' training slides together (an ensemble of folds); None if one has none.

    The mean of the means, and the SD of the mixture: ``sqrt(mean of variances + variance of means)``.
    """
    known = [s for s in stats if s is not None]
    if not stats or len(known) < len(stats):
        return None
    means = np.asarray([s["mean"] for s in known], np.float64)
    variances = np.asarray([s["sd"] for s in known], np.float64) ** 2
    sd = np.sqrt(variances.mean(axis=0) + means.var(axis=0))
    return {"mean": means.mean(axis=0).tolist(), "sd": sd.tolist(), "slides": max(s["slides"] for s in known)}


def colour_distance(colour: Sequence[float], stats: dict[str, Any]) -> float:
    """Between-slide SDs (at least :data:`MIN_SD`) from the training mean to ``colour``, in its farthest channel."""
    sd = np.maximum(np.asarray(stats["sd"], np.float64), MIN_SD)
    return float(np.max(np.abs(np.asarray(colour, np.float64) - np.asarray(stats["mean"], np.float64)) / sd))
