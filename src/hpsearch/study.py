"""Optuna studies over cross-validated runs: ``python train.py -m hparams_search=shallow``.

Built on hydra-optuna-sweeper 1.3.0's ``OptunaSweeperImpl`` (its setup, launcher and sampler handling) with
our own ask/tell loop, because the released loop (i) crashes on a NaN objective and leaves the trial
RUNNING, (ii) aborts on any failed trial, (iii) counts ``n_trials`` anew on every resume and restarts job
folders at 0, overwriting earlier trials, (iv) lets ``range(a, b)`` include ``b`` under TPE but not under the
grid sampler, (v) asks two trials blind (``n_jobs: 2``) and (vi) floods the log. Here:

- the objective is the fold mean of ``optimized_metric`` (``objective: mean_minus_sd`` penalises the fold
  sd), its direction inferred from the metric name unless given; the first trial's config is validated
  before anything trains;
- a trial that raises, or whose objective is NaN, is *failed* with its reason (trial user attribute
  ``reason`` and ``history.csv``) and the sweep goes on;
- the study lives in ``sqlite:///<sweep dir>/study.db`` by default; the same command continues it,
  ``n_trials`` is the *total* number of finished trials, also of several commands run at once on one study
  (trials are reserved under a lock, :mod:`src.hpsearch.trial_budget`), trials left running by a killed
  process are marked ``interrupted`` and their parameters are tried again; the job folder of a trial is
  named by its Optuna number and never reused;
- every value read back from the study is checked against a schema first (:mod:`src.hpsearch.study_data`):
  a malformed one stops the sweep with an error naming the study, trial and attribute;
- one console line per trial, and ``history.csv``, ``best.yaml``, ``optimization_results.yaml`` and the
  two plots are refreshed after each trial.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from src.config.validate import validate
from src.hpsearch.history import best_record, write_best, write_history, write_plots, write_results
from src.hpsearch.objective import OBJECTIVES, infer_direction, job_record, trial_line
from src.hpsearch.space import distribution, grid_choices, override_distribution, space_entries, suggest_space
from src.hpsearch.study_data import ATTR, job_folder, read_trials, study_label, trial_attrs
from src.hpsearch.sweep_info import read_sweep_file, split_override, study_location, write_sweep_file
from src.hpsearch.trial_budget import Heartbeat, counts, reserve_trial, study_lock_path
from src.infra.locks import FileLock

if TYPE_CHECKING:
    from hydra.plugins.launcher import Launcher
    from hydra.types import HydraContext

log = logging.getLogger(__name__)

QUIET = ("optuna", "alembic", "sqlalchemy", "hydra._internal.core_plugins.basic_launcher")


class StudySweeperImpl(OptunaSweeperImpl):
    """The Optuna sweeper with our loop (see the module docstring); arguments as the plugin's, plus three.

    Args:
        objective: ``mean`` or ``mean_minus_sd`` of ``optimized_metric`` over folds.
        plots: Draw the optimization-history and importance pictures after each trial.
        pruner: Fold-level pruner (``hydra.sweeper.pruner``); each trial's job builds it from its own config
            (:mod:`src.hpsearch.pruning`), so the built object is not used here (``sweep.json`` records it).
        **kwargs: The plugin's arguments (``sampler``, ``direction`` (also ``auto``), ``storage``,
            ``study_name``, ``n_trials``, ``n_jobs``, ``max_failure_rate``, ``params``, ...).
    """

    # set by setup(), which Hydra calls before sweep()
    config: DictConfig
    hydra_context: HydraContext
    launcher: Launcher

    def __init__(self, objective: str = "mean", plots: bool = True, pruner: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("search_space", None)
        kwargs.setdefault("custom_search_space", None)
        super().__init__(**kwargs)
        if str(objective) not in OBJECTIVES:
            raise ValueError(f"hparams_search.objective={objective!r}: use one of {', '.join(OBJECTIVES)}")
        self.objective = str(objective)
        self.plots = bool(plots)

    def sweep(self, arguments: list[str]) -> None:
        """Run (or continue) the study until ``n_trials`` trials have finished."""
        for name in QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sweep_dir = Path(self.config.hydra.sweep.dir).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)

        distributions, fixed = self._parse_space(arguments)
        searched = dict(distributions)  # every distribution of the sweep: queued parameters must fit them
        for entry in space_entries(self.config).values():  # every entry's grammar, before anything trains
            searched[str(entry["key"])] = distribution(str(entry["key"]), str(entry["values"]))
        job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        validate(job_cfg)  # optimized_metric, keys, targets: before the first trial
        metric = str(job_cfg.optimized_metric)
        direction = infer_direction(metric, _direction_name(self.direction))
        self._make_grid_sampler(distributions)

        storage, study_name = study_location(self.storage, self.study_name, sweep_dir)
        lock = study_lock_path(storage, sweep_dir)
        logging.disable(logging.INFO)  # Optuna's alembic migrations log a page of "setup plugin" lines
        try:
            with FileLock(lock):  # two commands started at once: one creates the study, the other loads it
                study = optuna.create_study(
                    study_name=study_name,
                    storage=storage,
                    sampler=self.sampler,
                    direction=direction,
                    load_if_exists=True,
                )
        finally:
            logging.disable(logging.NOTSET)
        if study.direction.name.lower() != direction:
            raise ValueError(
                f"study '{study_name}' in {storage} was created to {study.direction.name.lower()}, but "
                f"{metric} asks to {direction}: set hparams_search.direction or use another study"
            )
        label = study_label(study, storage)
        so_far = len(read_trials(study, label))
        self._reseed_on_resume(study, so_far)
        _check_same_study(sweep_dir, study_name, list(fixed), so_far)
        write_sweep_file(
            sweep_dir,
            "optuna",
            list(fixed),
            study_name=study_name,
            storage=storage,
            metric=metric,
            direction=direction,
            objective=self.objective,
            n_trials=self.n_trials,
            pruner=self._pruner_config(),
        )
        log.info(
            "Study '%s' (%s, %s %s of %s): %d of %d trials done",
            study_name,
            storage,
            direction,
            self.objective,
            metric,
            len(_finished(study, label)),
            self.n_trials,
        )
        while (trial := reserve_trial(study, label, self.n_trials, lock, searched)) is not None:
            self._run_trial(study, label, trial, sweep_dir, distributions, fixed, metric, direction)
            if self._too_many_failures(study, label):
                break
        best = best_record(_records(study, label, sweep_dir), direction)
        log.info(
            "Study '%s' done: %s",
            study_name,
            f"best objective {best['objective']:.4f} (trial {best['trial']}), see {sweep_dir / 'best.yaml'}"
            if best
            else "no trial completed (reasons in history.csv)",
        )

    def _parse_space(self, arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
        """Sweeps of ``hydra.sweeper.params`` and the command line → distributions; the rest → fixed overrides.

        A key given twice keeps its last value, so ``optimizer.lr=1e-4`` on the command line fixes a preset's
        searched key.
        """
        lines = [*self._parse_sweeper_params_config(), *arguments]
        distributions: dict[str, BaseDistribution] = {}
        fixed: dict[str, str] = {}  # override line → bare key
        for override in OverridesParser.create().parse_overrides(lines):
            key = override.get_key_element()
            bare = key.lstrip("+~")
            distributions.pop(key, None)
            fixed = {line: k for line, k in fixed.items() if k != bare}
            if override.is_sweep_override():
                distributions[key] = override_distribution(override)
            else:
                fixed[f"{key}={override.get_value_element_as_str()}"] = bare
        return distributions, fixed

    def _make_grid_sampler(self, distributions: dict[str, BaseDistribution]) -> None:
        """Fill a ``_partial_`` GridSampler with the grid of every searched key (``range`` stop excluded)."""
        if callable(self.sampler) and getattr(self.sampler, "func", None) is optuna.samplers.GridSampler:
            space = {k: grid_choices(d) for k, d in distributions.items()}
            for entry in space_entries(self.config).values():
                space[str(entry["key"])] = grid_choices(distribution(str(entry["key"]), str(entry["values"])))
            self.sampler = self.sampler(space)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in space.values()))

    def _pruner_config(self) -> dict[str, Any] | None:
        """``hydra.sweeper.pruner`` as plain data (recorded in ``sweep.json``; each job builds its own), or None."""
        node = OmegaConf.select(self.config, "hydra.sweeper.pruner")
        if node is None:
            return None
        config = cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))
        instantiate(config)  # a bad pruner fails here, before the first trial
        return config

    def _reseed_on_resume(self, study: optuna.Study, n_trials_so_far: int) -> None:
        """A continued study draws on from ``seed + number of trials`` (the same seed would repeat trial 0, 1, ...)."""
        node = OmegaConf.select(self.config, "hydra.sweeper.sampler")
        if not n_trials_so_far or node is None or node.get("seed") is None or node.get("_partial_"):
            return
        study.sampler = self.sampler = instantiate(node, seed=int(node.seed) + n_trials_so_far)

    def _run_trial(
        self,
        study: optuna.Study,
        label: str,
        trial: Trial,
        sweep_dir: Path,
        distributions: dict[str, BaseDistribution],
        fixed: dict[str, str],
        metric: str,
        direction: str,
    ) -> None:
        """Run one reserved trial (:func:`~src.hpsearch.trial_budget.reserve_trial`) and record it."""
        for key, dist in distributions.items():
            trial._suggest(key, dist)
        for line, key in fixed.items():
            trial.set_user_attr(key, split_override(line)[1])
        if self.custom_search_space_extender:
            self.custom_search_space_extender(self.config, trial)
        suggest_space(self.config, trial)
        job_dir = sweep_dir / str(trial.number)
        subdir = cast(dict[str, Any], OmegaConf.to_container(self.config.hydra.sweep, resolve=False)).get("subdir")
        if subdir == "${hydra.job.num}" and job_dir.exists() and any(job_dir.iterdir()):
            study.tell(trial, state=TrialState.FAIL)
            raise FileExistsError(
                f"{job_dir} holds an earlier trial {trial.number} that study '{study.study_name}' does not know "
                "(was study.db deleted?): use a new hydra.sweep.dir or hparams_search.study_name"
            )
        overrides = [*fixed, *(f"{k}={v}" for k, v in trial.params.items())]
        tic = time.perf_counter()
        try:
            with Heartbeat(study, trial):
                (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except BaseException as error:  # e.g. Ctrl-C: the trial must not stay RUNNING
            trial.set_user_attr(ATTR + "reason", f"interrupted: {type(error).__name__}")
            trial.set_user_attr(ATTR + "interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        record = job_record(
            trial.number, ret, time.perf_counter() - tic, metric, self.objective, direction, dict(trial.params)
        )
        record["job_dir"] = _relative(record.get("job_dir"), sweep_dir)  # read back only inside the sweep folder
        for key in ("mean", "sd", "folds", "seconds", "run_folder", "job_dir", "reason"):
            trial.set_user_attr(ATTR + key, record.get(key))
        try:
            if record["state"] == "complete":
                study.tell(trial, record["objective"])
            elif record["state"] == "pruned":  # its job reported the running fold means (src.hpsearch.pruning)
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, state=TrialState.FAIL)
        except RuntimeError as error:  # the grid sampler asks to stop once its grid is done: the trial is told
            if "Study.stop" not in str(error):
                raise
        records = _records(study, label, sweep_dir)
        best = best_record(records, direction)
        log.info(trial_line(record, best))
        self._write_outputs(sweep_dir, study, records, best, metric, direction)

    def _write_outputs(
        self,
        sweep_dir: Path,
        study: optuna.Study,
        records: list[dict],
        best: Mapping[str, Any] | None,
        metric: str,
        direction: str,
    ) -> None:
        write_history(sweep_dir, records)
        write_results(sweep_dir, best, direction, len(records))
        if best:
            write_best(sweep_dir, best, metric, self.objective, "trial")
        if self.plots:
            write_plots(sweep_dir, study)

    def _too_many_failures(self, study: optuna.Study, label: str) -> bool:
        done = _finished(study, label)
        failed = [t for t in done if t.state == TrialState.FAIL]
        if len(done) >= 3 and len(failed) / len(done) > self.max_failure_rate:
            log.error(
                "%d of %d trials failed (> max_failure_rate=%s): stopping the study",
                len(failed),
                len(done),
                self.max_failure_rate,
            )
            return True
        return False


def _check_same_study(sweep_dir: Path, study_name: str, fixed: list[str], n_trials: int) -> None:
    """A study continues only with the fixed overrides it started with (else its trials would not compare).

    ``hparams_search.*`` (e.g. a larger ``n_trials``) may change.
    """
    earlier = read_sweep_file(sweep_dir)
    if not n_trials or not earlier or earlier.get("kind") != "optuna":
        return
    same = lambda lines: {o for o in lines if not o.lstrip("+~").startswith(("hparams_search", "hydra."))}  # noqa: E731
    before, now = same(earlier.get("common_overrides", [])), same(fixed)
    if before != now:
        raise ValueError(
            f"study '{study_name}' in {sweep_dir} was run with other fixed overrides "
            f"(only then: {sorted(before - now)}; only now: {sorted(now - before)}): run the same command to "
            "continue it, or start another with hparams_search.study_name=<new name>"
        )


def _finished(study: optuna.Study, label: str) -> list[FrozenTrial]:
    """Finished trials that count towards ``n_trials`` (interrupted ones do not)."""
    return [t for t in read_trials(study, label) if counts(t, trial_attrs(label, t))]


def _records(study: optuna.Study, label: str, sweep_dir: Path) -> list[dict[str, Any]]:
    """Every trial but the queued ones as a history record (see :func:`src.hpsearch.history.history_table`)."""
    return [_record(label, t, sweep_dir) for t in read_trials(study, label) if t.state != TrialState.WAITING]


def _record(label: str, trial: FrozenTrial, sweep_dir: Path) -> dict[str, Any]:
    """A trial as a history record, from its checked attributes; ``job_dir`` only as a folder in ``sweep_dir``."""
    attrs = trial_attrs(label, trial)
    state = {TrialState.COMPLETE: "complete", TrialState.FAIL: "failed", TrialState.PRUNED: "pruned"}.get(
        trial.state, trial.state.name.lower()
    )
    if attrs.interrupted:
        state = "interrupted"
    folder = job_folder(sweep_dir, attrs.job_dir)
    return {
        "trial": trial.number,
        "state": state,
        "params": dict(trial.params),
        "objective": trial.value,
        **{k: getattr(attrs, k) for k in ("mean", "sd", "folds", "seconds", "run_folder", "reason")},
        "job_dir": str(folder) if folder else None,
    }


def _relative(job_dir: str | None, sweep_dir: Path) -> str | None:
    """A job folder as stored in the study: relative to the sweep folder when inside it."""
    if not job_dir:
        return None
    try:
        return str(Path(job_dir).absolute().relative_to(sweep_dir))
    except ValueError:
        return job_dir


def _direction_name(direction: Any) -> str:
    return direction.name if hasattr(direction, "name") else str(direction)
