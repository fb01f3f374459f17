"""Fold-level pruning of Optuna trials: after each fold, report the running fold mean; stop a clearly bad trial.

With a pruner (``hydra/sweeper/pruner=median``, or any ``optuna.pruners`` ``_target_`` at
``hydra.sweeper.pruner``), each trial's job (the same process under Hydra's basic launcher, another one under
submitit) reads the pruner, the study's storage and its name from its own Hydra config (``hydra.sweeper``, as
the sweeper does; never from a file in the sweep folder), and reports, after fold *k*, the mean of
``optimized_metric`` over its first *k* folds (last epoch) as the trial's intermediate value at step *k*, in the
study's storage. When the pruner says so, the run stops with :class:`~src.errors.TrialPrunedError`: its completed folds
stay in ``results_log.csv``, its ``status.json`` says ``pruned``, and the study records the trial as *pruned*
(``history.csv``). With the median pruner a trial stops when its running mean is worse than the median of the
earlier trials' running means after the same number of folds (from the 4th trial on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.errors import TrialPrunedError
from src.hpsearch.sweep_info import STUDY_SWEEPER, study_location

log = logging.getLogger(__name__)


@dataclass
class FoldPruner:
    """Reports a trial's running fold mean to its study and asks the study's pruner whether to stop.

    Attributes:
        storage: The study's storage URL.
        study_name: The study.
        trial_number: This job's trial.
        pruner: Its configuration (a ``_target_`` node of ``optuna.pruners``).
        metric: ``optimized_metric``.
    """

    storage: str
    study_name: str
    trial_number: int
    pruner: Mapping[str, Any]
    metric: str

    def report(self, rows: Sequence[Mapping[str, Any]], folds_done: int) -> None:
        """Report the mean of ``metric`` at each completed fold's last epoch; raise when the trial is pruned.

        Args:
            rows: The results rows of the folds completed so far (one per fold × saved epoch).
            folds_done: How many folds are complete (the step reported).

        Raises:
            TrialPrunedError: the pruner stops this trial (the message names the running mean and the step).
        """
        import optuna  # here: a plain training run does not pay for importing Optuna

        value = running_mean(rows, self.metric)
        if value is None:
            return  # a fold without the metric: the trial ends as failed, not pruned
        study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=instantiate(self.pruner))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.trial_number)
        trial = optuna.trial.Trial(study, trial_id)
        trial.report(value, folds_done)
        if trial.should_prune():
            raise TrialPrunedError(
                f"pruned after {folds_done} fold(s): running mean {self.metric} = {value:.4f} "
                f"({type(study.pruner).__name__})"
            )


def running_mean(rows: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    """Mean of ``metric`` over the folds in ``rows``, each at its last epoch (None if a fold lacks it)."""
    last: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        fold = str(row.get("fold"))
        if fold not in last or int(row.get("epoch", 0)) >= int(last[fold].get("epoch", 0)):
            last[fold] = row
    values = [last[fold].get(metric) for fold in last]
    numbers = [float(v) for v in values if v is not None]
    if not numbers or len(numbers) < len(values) or not all(math.isfinite(v) for v in numbers):
        return None
    return sum(numbers) / len(numbers)


def fold_pruner(metric: str) -> FoldPruner | None:
    """This job's pruner when it is a trial of a study with a pruner (see the module docstring), else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    sweeper = hydra_cfg.sweeper
    if sweeper.get("_target_") != STUDY_SWEEPER or not sweeper.get("pruner"):
        return None
    sweep_dir = Path(hydra_cfg.sweep.dir).absolute()
    storage, study_name = study_location(sweeper.get("storage"), sweeper.get("study_name"), sweep_dir)
    pruner = cast(dict[str, Any], OmegaConf.to_container(sweeper.pruner, resolve=True))
    return FoldPruner(storage, study_name, int(hydra_cfg.job.num), pruner, metric)
