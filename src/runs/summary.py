"""A run's ``summary.json``: mean, sd and 95% interval of every metric over the folds its folder completed.

One code path for a run that trains all its folds, for jobs of one run that train one fold each (the job that
ends last writes the summary of all of them, ``src.runs.jobs``) and for ``python -m src.runs.summarize``:
the rows of every completed fold are read back from its ``fold_status.json``, the folds and their patients
from the run's ``splits.json``, the metric bounds from the outcomes in the folds' ``params.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from src.evaluation.results_log import INTERVAL_METHOD, epoch_summary, json_safe, summarize
from src.infra.files import write_json_atomic
from src.outcomes import metric_bounds, outcomes_from_file
from src.runs.folds import completed_rows
from src.runs.naming import CONFIG_FILE, SPLITS_FILE, SUMMARY_FILE


def folder_bounds(folder: str | Path, allowed_kinds: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """The bounds of the run's metrics (AUROC in [0, 1], ...), from the outcomes of its folds' ``params.json``.

    Args:
        folder: The run folder.
        allowed_kinds: Outcome kinds from modules outside ``src/outcomes`` that may be imported (a run trained
            with ``loss.kind=my_lab.ordinal``); others are refused, as by ``load_model``.

    Raises:
        UnsafeFileError: a ``params.json`` naming an outcome kind that is not allowed (naming the file, the key
            and how to allow it); nothing was imported.
    """
    for path in sorted(Path(folder).glob("fold*/params.json")):
        outcomes = json.loads(path.read_text()).get("outcomes") or []
        return metric_bounds(outcomes_from_file(outcomes, path, allowed_kinds))
    return {}


def summary_record(
    folder: str | Path,
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    epoch: int,
    bounds: Mapping[str, tuple[float, float]],
    run_id: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The summary table over ``rows`` (fold → rows) and the ``summary.json`` record of the run in ``folder``.

    Args:
        folder: The run folder (its ``splits.json`` gives the strategy, fold sizes, dropped patients and the
            slides left out because their tiles could not be prepared).
        rows: The results rows of each completed fold.
        epoch: The epoch whose metrics are the run's (the largest of ``epochs``).
        bounds: Metric bounds (``src.outcomes.metric_bounds``).
        run_id: The run id (default: that of the rows, else the folder's name).
    """
    splits_path = Path(folder) / SPLITS_FILE
    splits = json.loads(splits_path.read_text()) if splits_path.exists() else {}
    sizes = {f["name"]: f for f in splits.get("folds", [])}
    every = [row for fold_rows in rows.values() for row in fold_rows]
    summary = summarize(every, bounds=bounds)
    if run_id is None:
        run_id = next((str(r["run_id"]) for r in every if r.get("run_id")), Path(folder).name)
    record = {
        "run_id": run_id,
        "strategy": splits.get("strategy"),
        "folds": list(rows),
        "patients": {
            name: {"train": len(sizes[name]["train_patients"]), "val": len(sizes[name]["val_patients"])}
            for name in rows
            if name in sizes
        },
        "dropped_patients": splits.get("dropped_patients", []),
        "failed_slides": splits.get("failed_slides", {}),
        "epoch": int(epoch),
        "interval": INTERVAL_METHOD,
        "metrics": epoch_summary(summary, int(epoch)),
        "by_epoch": summary.to_dict("records"),
    }
    return summary, json_safe(record)


def run_epoch(folder: str | Path) -> int:
    """The run's last epoch (the largest of ``epochs`` in its ``config.yaml``)."""
    return max(int(e) for e in OmegaConf.load(Path(folder) / CONFIG_FILE).epochs)


def write_summary(
    folder: str | Path,
    epoch: int | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    run_id: str | None = None,
    allowed_kinds: Iterable[str] = (),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write ``summary.json`` over every fold the folder completed (atomically); returns table and record.

    Args:
        folder: The run folder.
        epoch: The run's last epoch (default: from its ``config.yaml``).
        bounds: Metric bounds (default: from the folds' ``params.json``, see :func:`folder_bounds`).
        run_id: The run id (default: that of its results rows).
        allowed_kinds: Outcome kinds outside ``src/outcomes`` that reading the bounds may import.

    Raises:
        UnsafeFileError: without ``bounds``, a ``params.json`` naming an outcome kind not allowed.
    """
    folder = Path(folder)
    epoch = run_epoch(folder) if epoch is None else epoch
    bounds = folder_bounds(folder, allowed_kinds) if bounds is None else bounds
    summary, record = summary_record(folder, completed_rows(folder), epoch, bounds, run_id)
    write_json_atomic(folder / SUMMARY_FILE, record)
    return summary, record
