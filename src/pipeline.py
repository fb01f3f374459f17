"""The experiment behind train.py: project → folds → tiles → one FoldTrainer per fold → summary."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.config.validate import validate
from src.data.dataset import Dataset, SlideLabels
from src.data.splits import SplitPlan
from src.evaluation.results_log import append_results, format_summary, json_safe
from src.hpsearch.pruning import FoldPruner, TrialPrunedError, fold_pruner
from src.hpsearch.sweep_info import job_sweep_info
from src.infra.distributed import from_main, is_main, rank, run_token, wait_until, world_size
from src.infra.files import write_text_atomic as atomic_write_text
from src.infra.processes import use_threads
from src.outcomes import metric_bounds
from src.project import ensure_tiles, fit_plan_to_tiles, load_project, plan_folds, prepare_tiles, without_slides
from src.resume import Resume, check_resume, check_resume_points, check_same_folds, run_folder
from src.run_jobs import asked_folds, incomplete_folds, joined, left, run_lock
from src.run_status import STATUS_FILE, failure_fields, read_attempt, read_status, write_attempt, write_status
from src.run_summary import write_summary
from src.training.fold_trainer import build_trainer
from src.training.resume import completed_fold_rows, last_checkpoint, mark_fold_completed

log = logging.getLogger(__name__)


def run_dir(cfg: DictConfig) -> Path:
    """The run folder: Hydra's job folder when run by Hydra, else a fresh unique one."""
    if cfg.get("run_dir"):
        path = Path(cfg.run_dir)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        path = Path(cfg.paths.output_dir) / "runs" / f"{stamp}_{uuid.uuid4().hex[:6]}_{cfg.name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(cfg: DictConfig) -> float:
    """Run the configured experiment; returns the fold mean of ``cfg.optimized_metric``.

    The run folder's ``status.json`` says ``running`` from the start, then ``completed`` (with the metric) or
    ``failed`` (with the error); each fold's rows are appended to ``cfg.results_log`` as soon as the fold
    ends, so a crash in a later fold keeps them. A folder that holds a run already (``resume=<folder>``, or
    the same ``run_dir``) is resumed (``src.resume``): completed folds kept, the interrupted one continued. Jobs
    with other ``validation.folds`` and the same ``run_dir`` are jobs of one run (``src.run_jobs``): the last to
    end writes the summary of all their folds. A job of a sweep records its sweep id, job number and own
    overrides in ``status.json`` and in every results row (``src.hpsearch.sweep_info``).

    Under DDP every rank runs this; only rank 0 prepares the data and writes files or prints, the other
    ranks wait for it, read its ``splits.json`` and train with it (``src.infra.distributed``).
    """
    try:
        validate(cfg)  # every config error before any data is read
    except Exception as error:
        _record_config_error(cfg, error)
        raise
    use_threads(cfg.get("torch_threads", "auto"), int(cfg.dataloader.num_workers), "dataloader.num_workers")
    out = run_folder(cfg, run_dir)
    if not is_main():  # a DDP rank > 0: trains with rank 0, writes nothing (see src.infra.distributed)
        return _run(cfg, out, sweep=job_sweep_info())
    token = run_token()  # before Lightning starts the other ranks: they inherit it
    with run_lock(out):  # jobs of one run join its folder one at a time
        resumed = check_resume(cfg, out)  # a differing config or a live run: refused before anything runs
        if resumed is not None and resumed.complete:
            if world_size() > 1:  # ranks started with this one (SLURM, torchrun) have nothing to do either
                write_attempt(out, token, "completed")
            return resumed.report_complete()
        sweep = job_sweep_info()
        jobs = joined(read_status(out), asked_folds(cfg), out)
        write_attempt(out, token, "running")
        if resumed is not None:
            resumed.start(jobs=jobs)
        else:
            write_status(out, "running", jobs=jobs, **({"sweep": sweep} if sweep else {}))
            atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))  # a resume keeps its own
    try:
        if resumed is not None:  # before the data set-up: an unusable last.ckpt falls back, saying so
            check_resume_points(out, asked_folds(cfg))
        metric = _run(cfg, out, resumed, sweep, token)
    except TrialPrunedError as error:  # stopped by its study's pruner: its completed folds are in the log
        _record_end(out, token, error, "pruned", reason=str(error))
        raise
    except BaseException as error:  # also KeyboardInterrupt: the folder must not look like a good run
        _record_end(out, token, error, "failed", **failure_fields(error))
        raise
    return metric


def _record_end(out: Path, token: str, cause: BaseException, status: str, /, **fields: object) -> None:
    """Write the status of a run that ``cause`` ended; never raises, so that ``cause`` is what the run exits with.

    A status that cannot be written (a full disk) is logged, with the error that ended the run; no temporary
    file is left (``src.infra.files``).
    """
    try:
        with run_lock(out):
            write_status(out, status, jobs=left(read_status(out), out), **fields)
    except Exception as unwritten:
        log.error("%s could not be set to %r (%s); the run ended with %r", out / STATUS_FILE, status, unwritten, cause)
    try:
        write_attempt(out, token, "failed", **failure_fields(cause))
    except Exception as unwritten:
        log.error("The attempt file of %s could not be written (%s)", out, unwritten)


def _record_config_error(cfg: DictConfig, error: BaseException) -> None:
    """A config refused by ``validate``: Hydra's new job folder (the run folder) gets ``status.json`` ``failed``.

    With ``run_dir`` or ``resume`` the run folder is that one, which a refused config must not touch (it may
    hold a completed run), and without Hydra no folder was made: nothing is written then.
    """
    if cfg.get("run_dir") or cfg.get("resume") or not HydraConfig.initialized() or not is_main():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    try:
        write_status(folder, "failed", **failure_fields(error))
    except Exception as unwritten:
        log.error("%s could not be written (%s); the config error: %s", folder / STATUS_FILE, unwritten, error)


def _finish(cfg: DictConfig, out: Path, metric: float) -> None:
    """This job's status once its folds are done: ``running`` while other jobs of the run still train."""
    others = left(read_status(out), out)
    if others:
        write_status(out, "running", jobs=others)
        return
    incomplete = incomplete_folds(out)
    if incomplete:  # a job of the run failed or was killed
        previous = read_status(out) or {}
        error = f"{', '.join(incomplete)} did not complete: run its job again with the same run_dir"
        write_status(out, "failed", jobs=[], incomplete_folds=incomplete, error=previous.get("error") or error)
        return
    write_status(
        out,
        "completed",
        clear=("error_type", "error", "traceback", "incomplete_folds"),
        jobs=[],
        optimized_metric=cfg.optimized_metric,
        value=json_safe(metric),
    )


def _prepare(cfg: DictConfig, out: Path, resumed: Resume | None) -> tuple[Dataset, SlideLabels, SplitPlan]:
    """Rank 0: config, demo, labels, folds, tiles and ``splits.json`` (everything the ranks train on)."""
    dataset, labels = load_project(cfg)  # annotation and label errors before any tile is extracted
    plan = plan_folds(cfg, dataset, labels)
    dataset, failed = prepare_tiles(cfg, dataset)  # failed: slides left out with on_slide_error=skip
    # fold sizes count only patients that still have slides; their classes are checked again
    plan = fit_plan_to_tiles(plan, dataset, labels, failed, cfg.validation.get("small_classes", "warn"))
    if resumed is not None:
        check_same_folds(out, plan.to_dict(dataset.annotations))
    plan.write(out / "splits.json", dataset.annotations)
    log.info(
        "Validation: %s, %d fold(s) (%s splits%s)",
        plan.strategy,
        len(plan.folds),
        plan.source,
        f" {plan.path}" if plan.path else "",
    )
    return dataset, labels, plan


def _read_prepared(
    cfg: DictConfig, out: Path, timeout_s: float = 24 * 3600.0
) -> tuple[Dataset, SlideLabels, SplitPlan] | None:
    """A rank > 0: wait until rank 0 has prepared this attempt, then read its slides, tiles and ``splits.json``.

    Returns None when rank 0 found the run already completed (ranks started together by SLURM or torchrun).
    """
    token = run_token()

    def ready() -> bool:
        attempt = read_attempt(out, token) or {}  # this attempt's only: other jobs of the run have their own
        if attempt.get("state") == "failed":
            raise RuntimeError(f"rank {rank()}: rank 0 failed ({attempt.get('error_type')}: {attempt.get('error')})")
        return attempt.get("state") in ("prepared", "completed")

    wait_until(ready, f"prepare the run in {out}", timeout_s=timeout_s)
    if (read_attempt(out, token) or {}).get("state") == "completed":
        log.info("rank %d: the run in %s is already completed", rank(), out)
        return None
    dataset, labels = load_project(cfg, prepare=False)  # reads the demo and annotations rank 0 made
    plan = SplitPlan.read(out / "splits.json")
    dataset = without_slides(dataset, plan.failed_slides, "their tiles could not be made")  # rank 0 left them out
    dataset = ensure_tiles(cfg, dataset, extract=False)  # every shard is there: rank 0 extracted them
    return dataset, labels, plan


def _run(
    cfg: DictConfig, out: Path, resumed: Resume | None = None, sweep: dict | None = None, token: str | None = None
) -> float:
    if is_main():
        dataset, labels, plan = _prepare(cfg, out, resumed)
        write_attempt(out, token or run_token(), "prepared")  # the other ranks may read now
    else:
        prepared = _read_prepared(cfg, out)
        if prepared is None:  # rank 0 found the run completed: nothing to do here either
            return float("nan")
        dataset, labels, plan = prepared
    folds = plan.trained_folds()
    sweep = sweep or {}
    # unique across sweeps; jobs of one run (one run_dir) share its name
    run_id = f"{sweep['sweep_id']}-{sweep['sweep_job']}" if sweep and not cfg.get("run_dir") else out.name
    rows = []  # this job's folds so far, for the study's pruner
    pruner = fold_pruner(str(cfg.optimized_metric))  # None unless a trial of a study with a pruner
    for number, fold in enumerate(folds, 1):
        kept = completed_fold_rows(out / fold.name)  # None in a new run
        if kept is not None:
            log.info("%s: completed before the resume, kept (%d results rows)", fold.name, len(kept))
            rows.extend(kept)
            continue
        log.info(
            "%s: %d training / %d validation patients", fold.name, len(fold.train_patients), len(fold.val_patients)
        )
        trainer = build_trainer(
            cfg,
            out / fold.name,
            labels,
            name=f"{cfg.name}-{fold.name}",
            row_info={"run_id": run_id, "strategy": plan.strategy, "fold": fold.name, **sweep},
        )
        val_ds = dataset.select_patients(fold.val_patients) if fold.val_patients else None
        resume_from = last_checkpoint(out / fold.name)  # the interrupted fold of a resumed run
        results = trainer.train(dataset.select_patients(fold.train_patients), val_ds, resume_from=resume_from)
        fold_rows = list(results["epochs"].values())
        if is_main():  # now, not after the last fold; a fold re-done after a kill replaces its rows
            append_results(Path(cfg.results_log), fold_rows, replace={"run_id": run_id, "fold": fold.name})
            mark_fold_completed(out / fold.name, fold_rows)  # after its rows are in the log
        rows.extend(fold_rows)
        if pruner is not None and number < len(folds):
            _report_fold(pruner, rows, number)  # raises TrialPrunedError when the study's pruner stops this trial
    if not is_main():  # the summary, its print and the status are rank 0's
        return float("nan")
    last = max(int(e) for e in cfg.epochs)
    with run_lock(out):  # every fold the folder completed, this job's and those of other jobs of the run
        summary, record = write_summary(out, last, metric_bounds(labels.outcomes), run_id)
        final = record["metrics"]
        metric = (final.get(cfg.optimized_metric) or {}).get("mean")
        metric = float("nan") if metric is None else float(metric)
        _finish(cfg, out, metric)
    print_summary(summary, last, plan.strategy)
    if plan.failed_slides:  # on_slide_error=skip: their reasons are in splits.json and summary.json
        names = ", ".join(plan.failed_slides)
        print(f"\n{len(plan.failed_slides)} slide(s) left out, their tiles could not be made: {names}")
    print(f"\n{cfg.optimized_metric} (mean over {len(record['folds'])} fold(s), epoch {last}): {metric:.4f}")
    print(f"Run folder: {out}")
    return metric


def _report_fold(pruner: FoldPruner, rows: list[dict], folds_done: int) -> None:
    """Rank 0 reports the running fold mean to the study; every rank stops if the study's pruner says so."""
    reason = None
    if is_main():  # rank 0 has the rows
        try:
            pruner.report(rows, folds_done)
        except TrialPrunedError as error:
            reason = str(error)
    reason = from_main(reason)  # under DDP the other ranks stop too, instead of waiting at the next fold
    if reason:
        raise TrialPrunedError(reason)


def print_summary(summary: pd.DataFrame, epoch: int, strategy: str = "") -> None:
    """Print mean ± sd (95% interval) of each validation metric at ``epoch``."""
    print("\n" + format_summary(summary, epoch, strategy))
