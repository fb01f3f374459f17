"""The objective of a trial: the fold mean of ``optimized_metric`` (optionally penalised by its fold sd).

A job (one cross-validated run) returns the fold mean; the sweeper reads the per-fold values back from the
run folder (``fold*/results_log.csv`` at the last evaluated epoch), so it can record them, their sd, and
compute ``mean_minus_sd``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.errors import TrialPrunedError

OBJECTIVES = ("mean", "mean_minus_sd")
DIRECTIONS = ("auto", "minimize", "maximize")
LOWER_IS_BETTER = ("loss", "mae", "mse", "rmse", "error")  # metric names minimised when direction=auto


def infer_direction(metric: str, direction: str = "auto") -> str:
    """``minimize`` for losses and errors (``val/loss``, ``val/slide_mae/x``), else ``maximize`` (AUROC, R², c-index).

    Args:
        metric: The metric name, e.g. ``val/slide_auroc/tumor_type``.
        direction: ``auto``, or ``minimize`` / ``maximize`` to override.

    Raises:
        ValueError: ``direction`` is not one of ``auto``, ``minimize``, ``maximize``.
    """
    direction = str(direction)
    if direction not in DIRECTIONS:
        raise ValueError(f"hparams_search.direction={direction!r}: use one of {', '.join(DIRECTIONS)}")
    if direction != "auto":
        return direction
    parts = metric.split("/")
    name = parts[1] if len(parts) > 1 else parts[0]  # val/{level}_{metric}/{outcome} or val/loss
    name = name.split("_", 1)[-1] if "_" in name else name
    return "minimize" if any(word == name or name.endswith(word) for word in LOWER_IS_BETTER) else "maximize"


@dataclass
class FoldValues:
    """The optimised metric of one finished job, per fold."""

    metric: str
    values: dict[str, float] = field(default_factory=dict)  # fold name → value at the last epoch

    @property
    def mean(self) -> float:
        """Mean over folds (NaN when any fold is NaN or there is none)."""
        vals = list(self.values.values())
        return float(np.mean(vals)) if vals and all(math.isfinite(v) for v in vals) else float("nan")

    @property
    def sd(self) -> float:
        """Sample sd over folds (NaN for one fold)."""
        vals = list(self.values.values())
        return float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")

    def objective(self, name: str, direction: str) -> float:
        """``mean``, or ``mean_minus_sd``: mean − sd when maximising, mean + sd when minimising (0 sd for one fold).

        Raises:
            ValueError: ``name`` is not one of ``mean``, ``mean_minus_sd``.
        """
        if name not in OBJECTIVES:
            raise ValueError(f"hparams_search.objective={name!r}: use one of {', '.join(OBJECTIVES)}")
        if name == "mean":
            return self.mean
        sd = self.sd if math.isfinite(self.sd) else 0.0
        return self.mean - sd if direction == "maximize" else self.mean + sd

    def nan_reason(self) -> str | None:
        """Why the objective is undefined (names the folds), or None when it is defined."""
        if not self.values:
            return f"{self.metric} was not written by any fold"
        bad = [fold for fold, v in self.values.items() if not math.isfinite(v)]
        if bad:
            return (
                f"{self.metric} is NaN in {', '.join(bad)} "
                "(e.g. AUROC of a validation fold with a single class, or a diverged fit)"
            )
        return None


def fold_values(run_folder: str | Path, metric: str) -> FoldValues:
    """The metric of every fold of a run folder, at each fold's last evaluated epoch."""
    values: dict[str, float] = {}
    for log_path in sorted(Path(run_folder).glob("fold*/results_log.csv")):
        table = pd.read_csv(log_path)
        if not len(table) or "epoch" not in table:
            continue
        last = table[table.epoch == table.epoch.max()].iloc[-1]
        value = last.get(metric)
        values[log_path.parent.name] = float(value) if value is not None and pd.notna(value) else float("nan")
    return FoldValues(metric, values)


def job_record(
    number: int,
    job_return: Any,
    seconds: float,
    metric: str,
    objective: str,
    direction: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The history record of one finished job (a grid job or an Optuna trial).

    A job that raised is ``failed`` with the error as its reason (``pruned`` when it was stopped by the
    study's pruner, :mod:`src.hpsearch.pruning`); one whose objective is NaN (a fold without
    the metric, or NaN in a fold) is ``failed`` with a reason naming the folds; else ``complete``.

    Args:
        number: Job or trial number.
        job_return: Hydra's ``JobReturn`` of the job.
        seconds: Wall time of the job.
        metric: ``optimized_metric``.
        objective: ``mean`` or ``mean_minus_sd``.
        direction: ``minimize`` or ``maximize``.
        params: The job's own (searched) parameters.
    """
    record: dict[str, Any] = {"trial": number, "params": params, "seconds": round(seconds, 2)}
    hydra_cfg = getattr(job_return, "hydra_cfg", None)
    job_dir = Path(hydra_cfg.hydra.runtime.output_dir) if hydra_cfg is not None else None
    cfg = getattr(job_return, "cfg", None)
    run_folder = Path(cfg.run_dir) if cfg is not None and cfg.get("run_dir") else job_dir
    record.update(job_dir=str(job_dir) if job_dir else None, run_folder=str(run_folder) if run_folder else None)
    if job_return.status.name != "COMPLETED":
        error = job_return._return_value
        state = "pruned" if isinstance(error, TrialPrunedError) else "failed"
        return {**record, "state": state, "reason": f"{type(error).__name__}: {error}"[:2000]}
    assert run_folder is not None  # a job that ran has its Hydra config
    values = fold_values(run_folder, metric)
    value = values.objective(objective, direction)
    reason = values.nan_reason()
    return {
        **record,
        "state": "failed" if reason else "complete",
        "objective": None if reason else value,
        "mean": values.mean if math.isfinite(values.mean) else None,
        "sd": values.sd if math.isfinite(values.sd) else None,
        "folds": {k: (v if math.isfinite(v) else None) for k, v in values.values.items()},
        "reason": reason,
    }


def trial_line(record: Mapping[str, Any], best: Mapping[str, Any] | None, label: str = "trial") -> str:
    """One console line per trial: number, state, objective, best so far, parameters and seconds."""
    params = " ".join(f"{k}={_short(v)}" for k, v in (record.get("params") or {}).items())
    if record["state"] == "complete":
        head = f"{label} {record['trial']} complete: objective {record['objective']:.4f}"
    else:
        head = f"{label} {record['trial']} {record['state']}: {record.get('reason')}"
    best_text = f"best {best['objective']:.4f} ({label} {best['trial']})" if best else "best -"
    return f"{head} | {best_text} | {params} | {record.get('seconds', 0):.1f} s"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
