"""A run folder's life, as ``src.pipeline.run`` drives it: open → join → prepared → fold_done … → finish.

:class:`RunFolder` holds what one job (one process, one DDP rank) knows about the run folder it trains into,
and says in a few verbs what happens to the folder:

- :meth:`RunFolder.open` picks the folder: ``resume=``, ``run_dir=``, Hydra's job folder, or a new one;
- :meth:`RunFolder.join` (rank 0, under the run's lock): checks that the folder may be resumed or joined,
  and marks it ``running`` (a new run also saves its ``config.yaml``); False when it completed already;
- :meth:`RunFolder.write_splits` then :meth:`RunFolder.prepared` (rank 0) let the other ranks start, which
  wait in :meth:`RunFolder.wait_prepared`;
- :meth:`RunFolder.kept` (a fold completed before a resume) and :meth:`RunFolder.fold_done` (a fold just
  trained) are the one place where a fold's rows reach the results log, ``fold_status.json`` and the study's
  pruner;
- :meth:`RunFolder.finish` writes ``summary.json`` and the final status; :meth:`RunFolder.fail` and
  :meth:`RunFolder.pruned` the status of a run that an error ended (``src.runs.status.config_refused``: one
  that ``validate`` refused).

Under DDP every rank holds a ``RunFolder`` and only rank 0 writes (``src.infra.distributed``): ``join``,
``write_splits``, ``prepared`` and ``finish`` are called on rank 0 only; ``fold_done``, ``fail`` and ``pruned``
are called on every rank and write on rank 0 only. The files' formats are those of ``src.runs.status``,
``jobs``, ``folds`` and ``summary``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src.data.splits import SplitPlan
from src.errors import TrialPrunedError
from src.evaluation.results_log import append_results, json_safe
from src.infra.distributed import from_main, is_main, rank, run_token, wait_until, world_size
from src.infra.files import write_text_atomic
from src.runs.folds import (
    completed_fold_rows,
    incomplete_folds,
    mark_fold_completed,
    resume_point,
    unfinished_fold_dirs,
)
from src.runs.jobs import asked_folds, joined, left, run_lock
from src.runs.naming import CONFIG_FILE, SPLITS_FILE, STATUS_FILE, output_folder
from src.runs.resume import Resume, check_resume, check_same_folds
from src.runs.status import failure_fields, read_attempt, read_status, write_attempt, write_status
from src.runs.summary import write_summary

log = logging.getLogger(__name__)


class Pruner(Protocol):
    """What a study's fold pruner offers (``src.hpsearch.pruning.FoldPruner``)."""

    def report(self, rows: list[dict[str, Any]], folds_done: int) -> None:
        """Report the running fold mean; raise ``TrialPrunedError`` when the study's pruner stops the trial."""


@dataclass
class RunFolder:
    """The run folder one job trains into, and what this job knows of it (see the module doc).

    Attributes:
        path: The run folder.
        token: This attempt's id, shared by its DDP ranks (``src.infra.distributed.run_token``).
        folds: The fold numbers this job trains (``validation.folds``; None: all).
        run_id: The ``run_id`` of its results rows: the folder's name, or ``<sweep id>-<job>`` for a job of a
            sweep without ``run_dir`` (unique across sweeps; jobs of one run share the folder's name).
        results_log: The project's ``results_log.csv``.
        sweep: The sweep id, job number and own overrides of a job of a sweep (``src.hpsearch.sweep_info``).
        pruner: The study's pruner of a trial (``src.hpsearch.pruning``), else None.
        resumed: The run being resumed or joined (set by :meth:`join`); None: a new run.
        rows: This job's folds' results rows so far (kept and trained), which the pruner sees.
        folds_seen: How many of this job's folds were kept or trained so far (the pruner's step).
    """

    path: Path
    token: str
    folds: list[int] | None
    run_id: str
    results_log: Path
    sweep: dict[str, Any] = field(default_factory=dict)
    pruner: Pruner | None = None
    resumed: Resume | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    folds_seen: int = 0

    @classmethod
    def open(cls, cfg: DictConfig, sweep: Mapping[str, Any] | None = None, pruner: Pruner | None = None) -> RunFolder:
        """The folder of ``resume`` when set, else ``run_dir``, else Hydra's job folder, else a new one.

        Call it before Lightning starts the other DDP ranks: they inherit this attempt's token.
        """
        if cfg.get("resume"):
            if cfg.get("run_dir") and Path(cfg.run_dir).resolve() != Path(cfg.resume).resolve():
                log.warning("resume=%s given: run_dir=%s is ignored", cfg.resume, cfg.run_dir)
            path = Path(cfg.resume).expanduser()
        else:
            path = output_folder(cfg.get("run_dir"), Path(cfg.paths.output_dir) / "runs", cfg.name)
        sweep = dict(sweep or {})
        run_id = f"{sweep['sweep_id']}-{sweep['sweep_job']}" if sweep and not cfg.get("run_dir") else path.name
        return cls(path, run_token(), asked_folds(cfg), run_id, Path(cfg.results_log), sweep, pruner)

    def join(self, cfg: DictConfig) -> bool:
        """Rank 0: take this job's place in the run (new, resumed, or joined by a job for other folds).

        Under the run's lock: the folder is checked (``src.runs.resume.check_resume``), this job is added to
        ``status.json``'s ``jobs``, which says ``running``; a new run saves its ``config.yaml`` (a resumed run
        keeps its own).

        Returns:
            False when the run completed already, with every fold this job asks for: there is nothing to do
            (:meth:`report_complete` says so).

        Raises:
            ConfigError: the folder may not be resumed (a differing config, a live job for the same folds).
        """
        with run_lock(self.path):  # jobs of one run join its folder one at a time
            self.resumed = check_resume(cfg, self.path)
            if self.resumed is not None and self.resumed.complete:
                if world_size() > 1:  # ranks started with this one (SLURM, torchrun) have nothing to do either
                    write_attempt(self.path, self.token, "completed")
                return False
            jobs = joined(read_status(self.path), self.folds, self.path)
            write_attempt(self.path, self.token, "running")
            if self.resumed is not None:
                self.resumed.start(jobs=jobs)
            else:
                extra: dict[str, Any] = {"sweep": self.sweep} if self.sweep else {}
                write_status(self.path, "running", jobs=jobs, **extra)
                write_text_atomic(self.path / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        return True

    def report_complete(self) -> float:
        """Say that the completed run is left as it is; returns its saved metric (NaN if none)."""
        assert self.resumed is not None, "join() found no completed run"
        return self.resumed.report_complete()

    def unfinished_folds(self) -> list[Path]:
        """The folders of the folds this job trains that a resumed run has not completed (none in a new run)."""
        return unfinished_fold_dirs(self.path, self.folds) if self.resumed is not None else []

    def write_splits(self, plan: SplitPlan, annotations: pd.DataFrame) -> None:
        """Rank 0: write ``splits.json``; a resumed run's folds must be those it planned before.

        Raises:
            ConfigError: a resumed run's folds differ from its ``splits.json`` (``check_same_folds``).
        """
        if self.resumed is not None:
            check_same_folds(self.path, plan.to_dict(annotations))
        plan.write(self.path / SPLITS_FILE, annotations)

    def prepared(self) -> None:
        """Rank 0: the data and ``splits.json`` are ready; the other ranks of this attempt may read them."""
        write_attempt(self.path, self.token, "prepared")

    def wait_prepared(self, timeout_s: float = 24 * 3600.0) -> bool:
        """A rank > 0: wait until rank 0 has prepared this attempt (other jobs of the run have their own).

        Returns:
            False when rank 0 found the run already completed (ranks started together by SLURM or torchrun).

        Raises:
            RuntimeError: rank 0 failed (its error named).
            TimeoutError: rank 0 said nothing within ``timeout_s``.
        """

        def ready() -> bool:
            attempt = read_attempt(self.path, self.token) or {}
            if attempt.get("state") == "failed":
                error = f"{attempt.get('error_type')}: {attempt.get('error')}"
                raise RuntimeError(f"rank {rank()}: rank 0 failed ({error})")
            return attempt.get("state") in ("prepared", "completed")

        wait_until(ready, f"prepare the run in {self.path}", timeout_s=timeout_s)
        if (read_attempt(self.path, self.token) or {}).get("state") == "completed":
            log.info("rank %d: the run in %s is already completed", rank(), self.path)
            return False
        return True

    def kept(self, fold: str) -> bool:
        """Whether ``fold`` completed before (a resume, a job of the run): it is kept, its rows count as this job's.

        Call it for each fold of this job in order, then :meth:`fold_done` for each fold it trains.
        """
        rows = completed_fold_rows(self.path / fold)
        if rows is None:
            return False
        log.info("%s: completed before the resume, kept (%d results rows)", fold, len(rows))
        self.rows.extend(rows)
        self.folds_seen += 1
        return True

    def resume_point(self, fold: str) -> Path | None:
        """The checkpoint an interrupted ``fold`` continues from (its ``last.ckpt``); None: it starts afresh."""
        return resume_point(self.path / fold)

    def fold_done(self, fold: str, rows: list[dict[str, Any]], last: bool) -> None:
        """A fold this job trained ended: its rows go to the results log, ``fold_status.json`` and the pruner.

        Rank 0 appends the rows to the results log now, not after the last fold (a fold re-done after a kill
        replaces its rows), then marks the fold completed. Unless ``last``, a trial of a study with a pruner
        reports its running fold mean: rank 0 asks the study, every rank gets the answer.

        Raises:
            TrialPrunedError: on every rank, when the study's pruner stops this trial.
        """
        if is_main():
            append_results(self.results_log, rows, replace={"run_id": self.run_id, "fold": fold})
            mark_fold_completed(self.path / fold, rows)  # after its rows are in the log
        self.rows.extend(rows)
        self.folds_seen += 1
        if self.pruner is not None and not last:
            self._report_to_pruner()

    def _report_to_pruner(self) -> None:
        """Rank 0 reports the running fold mean to the study; every rank stops if the study's pruner says so."""
        assert self.pruner is not None  # fold_done reports only when there is one
        reason = None
        if is_main():  # rank 0 has the rows
            try:
                self.pruner.report(self.rows, self.folds_seen)
            except TrialPrunedError as error:
                reason = str(error)
        decided = from_main(reason)  # under DDP the other ranks stop too, instead of waiting at the next fold
        if decided:
            raise TrialPrunedError(str(decided))

    def finish(
        self, epoch: int, bounds: Mapping[str, tuple[float, float]], metric_name: str
    ) -> tuple[pd.DataFrame, dict[str, Any], float]:
        """Rank 0, once this job's folds are done: ``summary.json`` over every fold the folder completed, the status.

        Under the run's lock: the summary counts this job's folds and those of other jobs of the run. The status
        stays ``running`` while other jobs still train; the last job writes ``completed`` with the metric, or
        ``failed`` when a fold folder was left incomplete (a job of the run failed or was killed).

        Args:
            epoch: The run's last epoch (its metrics are the run's).
            bounds: Metric bounds (``src.outcomes.metric_bounds``).
            metric_name: ``optimized_metric``.

        Returns:
            The summary table, the ``summary.json`` record, and the fold mean of ``metric_name`` (NaN if none).
        """
        with run_lock(self.path):
            summary, record = write_summary(self.path, epoch, bounds, self.run_id)
            metric = (record["metrics"].get(metric_name) or {}).get("mean")
            metric = float("nan") if metric is None else float(metric)
            self._write_end(metric_name, metric)
        return summary, record, metric

    def _write_end(self, metric_name: str, metric: float) -> None:
        others = left(read_status(self.path), self.path)
        if others:
            write_status(self.path, "running", jobs=others)
            return
        incomplete = incomplete_folds(self.path)
        if incomplete:  # a job of the run failed or was killed
            error = (read_status(self.path) or {}).get("error")
            error = error or f"{', '.join(incomplete)} did not complete: run its job again with the same run_dir"
            write_status(self.path, "failed", jobs=[], incomplete_folds=incomplete, error=error)
            return
        write_status(
            self.path,
            "completed",
            clear=("error_type", "error", "traceback", "incomplete_folds"),
            jobs=[],
            optimized_metric=metric_name,
            value=json_safe(metric),
        )

    def fail(self, error: BaseException) -> None:
        """Rank 0: ``status.json`` says ``failed`` with ``error`` (type, message, traceback); never raises."""
        self._record_end(error, "failed", **failure_fields(error))

    def pruned(self, error: TrialPrunedError) -> None:
        """Rank 0: ``status.json`` says ``pruned`` with the pruner's reason; never raises."""
        self._record_end(error, "pruned", reason=str(error))

    def _record_end(self, cause: BaseException, status: str, /, **fields: Any) -> None:
        """Write the status of a run that ``cause`` ended; never raises, so that ``cause`` is what the run exits with.

        A status that cannot be written (a full disk) is logged, with the error that ended the run; no temporary
        file is left (``src.infra.files``).
        """
        if not is_main():
            return
        try:
            with run_lock(self.path):
                write_status(self.path, status, jobs=left(read_status(self.path), self.path), **fields)
        except Exception as unwritten:
            path = self.path / STATUS_FILE
            log.error("%s could not be set to %r (%s); the run ended with %r", path, status, unwritten, cause)
        try:
            write_attempt(self.path, self.token, "failed", **failure_fields(cause))
        except Exception as unwritten:
            log.error("The attempt file of %s could not be written (%s)", self.path, unwritten)
