"""The cohort's tables: one row per slide and per patient, the report of each slide, evaluation outputs.

``slide_predictions.csv``: ``slide``, ``patient`` (when known), ``n_tiles``, then every prediction
column: the mean of the slide's tiles. ``patient_predictions.csv`` (with a ``patient`` column): the mean
over **all** the patient's tiles, as in training's tables. ``report.csv``: ``slide, path, status
(done|failed), tiles, seconds, error, colour_z, colour_outlier`` (how far the slide's colour lies from the
training tiles', ``src.data.tile_colour``; blank for a model that records no training colour).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from src.evaluation.metrics import evaluate
from src.evaluation.plots import outcome_plots
from src.evaluation.results_log import append_results, json_safe
from src.infra.files import atomic_path

REPORT_COLUMNS = ["slide", "path", "status", "tiles", "seconds", "error", "colour_z", "colour_outlier"]


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write a CSV through a temporary name."""
    with atomic_path(path, fsync=False) as tmp:
        table.to_csv(tmp, index=False)
    return path


def slide_row(tiles: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """One slide's row: its keys, tile count and mean of each prediction column."""
    row: dict[str, Any] = {"slide": tiles["slide"].iloc[0]}
    if "patient" in tiles.columns:
        row["patient"] = tiles["patient"].iloc[0]
    row["n_tiles"] = len(tiles)
    row.update({column: float(tiles[column].mean()) for column in columns})
    return row


def patient_table(slides: pd.DataFrame, columns: Sequence[str], weight_by_tiles: bool = True) -> pd.DataFrame:
    """Per patient, the mean over all its tiles (slide means weighted by their tile counts).

    With ``weight_by_tiles=False`` (MIL: a slide's row is its bag's prediction) the mean over its slides.
    """
    weights = slides["n_tiles"] if weight_by_tiles else pd.Series(1, index=slides.index)
    weighted = slides[list(columns)].mul(weights, axis=0)
    weighted["patient"], weighted["n_tiles"], weighted["weight"] = slides["patient"], slides["n_tiles"], weights
    grouped = weighted.groupby("patient", sort=True)
    table = grouped[list(columns)].sum().div(grouped["weight"].sum(), axis=0)
    table.insert(0, "n_tiles", grouped["n_tiles"].sum())
    return table.reset_index()


def write_tables(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], outdir: Path, weight_by_tiles: bool = True
) -> dict[str, Path]:
    """Write ``slide_predictions.csv`` and, when slides have patients, ``patient_predictions.csv``.

    Patient rows are the tile-weighted mean of its slides (``weight_by_tiles=False``: the plain mean, for MIL).
    """
    slides = pd.DataFrame(list(rows))
    written = {"slide": write_csv(slides, outdir / "slide_predictions.csv")}
    if len(slides) and "patient" in slides.columns and slides["patient"].notna().all():
        patients = patient_table(slides, columns, weight_by_tiles)
        written["patient"] = write_csv(patients, outdir / "patient_predictions.csv")
    return written


def write_evaluation(
    tiles: pd.DataFrame,
    outcomes: Sequence,
    outdir: Path,
    epoch: int,
    row_info: Mapping[str, Any],
    level: str = "tile",
) -> dict[str, float]:
    """Metrics (named as training's: ``val/slide_auroc/<outcome>``), plots and a results row.

    ``tiles`` holds rows at ``level`` (``tile``; ``slide`` for MIL bags): metrics from that level up.

    Writes ``metrics.json``, ``{tile,slide,patient}_predictions.parquet`` with truth columns, the outcome
    kinds' plots under ``plots/`` and one row in ``results_log.csv``.

    Returns:
        The metrics.
    """
    metrics, tables = evaluate(tiles, outcomes, level=level)
    metrics = {f"val/{name}": float(value) for name, value in metrics.items()}
    for level, table in tables.items():
        with atomic_path(outdir / f"{level}_evaluation.parquet", fsync=False) as tmp:
            table.to_parquet(tmp, index=False)
    outcome_plots(tables, outcomes, outdir / "plots", epoch)
    with atomic_path(outdir / "metrics.json", fsync=False) as tmp:
        tmp.write_text(json.dumps(json_safe(metrics), indent=2))
    append_results(outdir / "results_log.csv", [{**row_info, "epoch": epoch, **metrics}])
    return metrics


def summary(report: pd.DataFrame, seconds: float) -> str:
    """The printed end of a prediction: counts, tiles, time, and each failed slide with its reason."""
    done, failed = report[report.status == "done"], report[report.status == "failed"]
    lines = [
        f"{len(report)} slide(s): {len(done)} predicted ({int(done.tiles.sum()):,} tiles in {seconds:.1f} s), "
        f"{len(failed)} failed"
    ]
    lines += [f"  FAILED {r.slide}: {r.error}" for r in failed.itertuples()]
    lines += [
        f"  COLOUR {r.slide}: {r.colour_z:.1f} SDs from the training tiles' colour: its predictions may mean little"
        for r in report[report.colour_outlier.eq(True)].itertuples()
    ]
    return "\n".join(lines)
