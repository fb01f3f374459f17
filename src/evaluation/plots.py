"""Plots saved at each evaluated epoch: ROC curves (categorical), scatter plots (linear), Kaplan-Meier (cox)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import r2_score, roc_auc_score, roc_curve

from src.infra.files import atomic_path


def roc_plot(
    tables: Mapping[str, pd.DataFrame],
    outcome: str,
    classes: Sequence[str],
    columns: Sequence[str],
    path: Path,
    title: str,
) -> Path:
    """One figure with a one-vs-rest ROC curve per class, one panel per level.

    Args:
        tables: Prediction table of each level.
        outcome: The outcome column (``{outcome}-y_true`` holds class indices).
        classes: Class names, in index order.
        columns: Probability column of each class.
        path: PNG to write.
        title: Figure title.
    """
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.2), squeeze=False)
    for ax, (level, table) in zip(axes[0], tables.items(), strict=True):
        y_true = table[f"{outcome}-y_true"].to_numpy().astype(int)
        shown = list(classes) if len(classes) > 2 else list(classes)[1:]
        for index, (name, column) in enumerate(zip(classes, columns, strict=True)):
            if name not in shown:
                continue
            positive = y_true == index
            if positive.all() or not positive.any():
                continue
            fpr, tpr, _ = roc_curve(positive, table[column])
            auc = roc_auc_score(positive, table[column])
            ax.plot(fpr, tpr, lw=2, label=f"{name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        ax.set(title=f"{level} (n={len(table)})", xlabel="False positive rate", ylabel="True positive rate")
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def scatter_plot(tables: Mapping[str, pd.DataFrame], outcome: str, path: Path, title: str) -> Path:
    """Predicted versus true values, one panel per level (at most 2000 points each)."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.6), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)
    for ax, (level, table) in zip(axes[0], tables.items(), strict=True):
        if len(table) > 2000:
            table = table.iloc[rng.choice(len(table), 2000, replace=False)]
        y_true, y_pred = table[f"{outcome}-y_true"], table[f"{outcome}-y_pred"]
        ax.scatter(y_true, y_pred, s=8 if len(table) > 200 else 30, alpha=0.5 if len(table) > 200 else 0.8)
        low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low, high], [low, high], ls="--", c="grey", lw=1, label="y = x")
        r2 = f", R² {r2_score(y_true, y_pred):.3f}" if len(table) > 1 else ""
        ax.set(title=f"{level} (n={len(table)}{r2})", xlabel=f"true {outcome}", ylabel="predicted")
        ax.set(xlim=(low - pad, high + pad), ylim=(low - pad, high + pad), aspect="equal")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)
    return path


def outcome_plots(
    tables: Mapping[str, pd.DataFrame], outcomes: Sequence[Any], plot_dir: Path, epoch: int
) -> list[Path]:
    """All plots of one evaluated epoch (each outcome draws its kind's plots); returns the written files."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for outcome in outcomes:
        written += outcome.plots(tables, plot_dir, epoch, f"{outcome.name}, validation, epoch {epoch}")
    return written


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> None:
    """Save and close a figure: the whole image under ``path`` or, on any failure, no new file."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
