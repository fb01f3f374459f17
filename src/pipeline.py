"""The experiment behind train.py: project → folds → tiles → one FoldTrainer per fold → summary."""

from __future__ import annotations

import logging

import pandas as pd
from omegaconf import DictConfig

from src.config.validate import validate
from src.data.dataset import Dataset, SlideLabels
from src.data.splits import SplitPlan
from src.errors import TrialPrunedError
from src.evaluation.results_log import format_summary
from src.hpsearch.pruning import fold_pruner
from src.hpsearch.sweep_info import job_sweep_info
from src.infra.distributed import is_main
from src.infra.processes import use_threads
from src.outcomes import metric_bounds
from src.project import ensure_tiles, fit_plan_to_tiles, load_project, plan_folds, prepare_tiles, without_slides
from src.runs.folder import RunFolder
from src.runs.naming import SPLITS_FILE
from src.runs.status import config_refused
from src.training.fold_trainer import build_trainer
from src.training.resume_point import check_resume_point

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float:
    """Run the configured experiment; returns the fold mean of ``cfg.optimized_metric``.

    The run folder's ``status.json`` says ``running`` from the start, then ``completed`` (with the metric) or
    ``failed`` (with the error); each fold's rows are appended to ``cfg.results_log`` as soon as the fold
    ends, so a crash in a later fold keeps them. A folder that holds a run already (``resume=<folder>``, or
    the same ``run_dir``) is resumed (``src.runs.resume``): completed folds kept, the interrupted one continued.
    Jobs with other ``validation.folds`` and the same ``run_dir`` are jobs of one run (``src.runs.jobs``): the
    last to end writes the summary of all their folds. A job of a sweep records its sweep id, job number and own
    overrides in ``status.json`` and in every results row (``src.hpsearch.sweep_info``). The run folder's life
    is :class:`~src.runs.folder.RunFolder`'s.

    Under DDP every rank runs this; only rank 0 prepares the data and writes files or prints, the other
    ranks wait for it, read its ``splits.json`` and train with it (``src.infra.distributed``).
    """
    try:
        validate(cfg)  # every config error before any data is read
    except Exception as error:
        config_refused(cfg, error)
        raise
    use_threads(cfg.get("torch_threads", "auto"), int(cfg.dataloader.num_workers), "dataloader.num_workers")
    folder = RunFolder.open(cfg, job_sweep_info(), fold_pruner(str(cfg.optimized_metric)))
    if is_main() and not folder.join(cfg):  # a differing config or a live run: refused before anything runs
        return folder.report_complete()  # completed before: nothing to do
    try:
        prepared = _prepare(cfg, folder) if is_main() else _read_prepared(cfg, folder)
        if prepared is None:  # a rank > 0 of a run rank 0 found completed: nothing to do here either
            return float("nan")
        dataset, labels, plan = prepared
        _train_folds(cfg, folder, dataset, labels, plan)
        return _summary(cfg, folder, labels, plan) if is_main() else float("nan")  # the summary is rank 0's
    except TrialPrunedError as error:  # stopped by its study's pruner: its completed folds are in the log
        folder.pruned(error)
        raise
    except BaseException as error:  # also KeyboardInterrupt: the folder must not look like a good run
        folder.fail(error)
        raise


def _prepare(cfg: DictConfig, folder: RunFolder) -> tuple[Dataset, SlideLabels, SplitPlan]:
    """Rank 0: demo, labels, folds, tiles and ``splits.json`` (everything the ranks train on), then say so."""
    for fold_dir in folder.unfinished_folds():  # a resume: an unusable last.ckpt falls back, saying so
        check_resume_point(fold_dir)
    dataset, labels = load_project(cfg)  # annotation and label errors before any tile is extracted
    plan = plan_folds(cfg, dataset, labels)
    dataset, failed = prepare_tiles(cfg, dataset)  # failed: slides left out with on_slide_error=skip
    # fold sizes count only patients that still have slides; their classes are checked again
    plan = fit_plan_to_tiles(plan, dataset, labels, failed, cfg.validation.get("small_classes", "warn"))
    folder.write_splits(plan, dataset.annotations)  # a resumed run's folds must be those it planned
    log.info(
        "Validation: %s, %d fold(s) (%s splits%s)",
        plan.strategy,
        len(plan.folds),
        plan.source,
        f" {plan.path}" if plan.path else "",
    )
    folder.prepared()  # the other ranks may read now
    return dataset, labels, plan


def _read_prepared(cfg: DictConfig, folder: RunFolder) -> tuple[Dataset, SlideLabels, SplitPlan] | None:
    """A rank > 0: wait until rank 0 has prepared this attempt, then read its slides, tiles and ``splits.json``.

    Returns None when rank 0 found the run already completed (ranks started together by SLURM or torchrun).
    """
    if not folder.wait_prepared():
        return None
    dataset, labels = load_project(cfg, prepare=False)  # reads the demo and annotations rank 0 made
    plan = SplitPlan.read(folder.path / SPLITS_FILE)
    dataset = without_slides(dataset, plan.failed_slides, "their tiles could not be made")  # rank 0 left them out
    dataset = ensure_tiles(cfg, dataset, extract=False)  # every shard is there: rank 0 extracted them
    return dataset, labels, plan


def _train_folds(cfg: DictConfig, folder: RunFolder, dataset: Dataset, labels: SlideLabels, plan: SplitPlan) -> None:
    """Train this job's folds in order; each one's rows go to the run folder when it ends (``RunFolder.fold_done``)."""
    folds = plan.trained_folds()
    for number, fold in enumerate(folds, 1):
        if folder.kept(fold.name):  # completed before a resume: not trained again
            continue
        log.info(
            "%s: %d training / %d validation patients", fold.name, len(fold.train_patients), len(fold.val_patients)
        )
        trainer = build_trainer(
            cfg,
            folder.path / fold.name,
            labels,
            name=f"{cfg.name}-{fold.name}",
            row_info={"run_id": folder.run_id, "strategy": plan.strategy, "fold": fold.name, **folder.sweep},
        )
        val_ds = dataset.select_patients(fold.val_patients) if fold.val_patients else None
        train_ds = dataset.select_patients(fold.train_patients)
        results = trainer.train(train_ds, val_ds, resume_from=folder.resume_point(fold.name))
        folder.fold_done(fold.name, list(results["epochs"].values()), last=number == len(folds))


def _summary(cfg: DictConfig, folder: RunFolder, labels: SlideLabels, plan: SplitPlan) -> float:
    """Rank 0: the run's summary over every fold its folder completed, printed; returns the metric's fold mean."""
    last = max(int(e) for e in cfg.epochs)
    summary, record, metric = folder.finish(last, metric_bounds(labels.outcomes), cfg.optimized_metric)
    print_summary(summary, last, plan.strategy)
    if plan.failed_slides:  # on_slide_error=skip: their reasons are in splits.json and summary.json
        names = ", ".join(plan.failed_slides)
        print(f"\n{len(plan.failed_slides)} slide(s) left out, their tiles could not be made: {names}")
    print(f"\n{cfg.optimized_metric} (mean over {len(record['folds'])} fold(s), epoch {last}): {metric:.4f}")
    print(f"Run folder: {folder.path}")
    return metric


def print_summary(summary: pd.DataFrame, epoch: int, strategy: str = "") -> None:
    """Print mean ± sd (95% interval) of each validation metric at ``epoch``."""
    print("\n" + format_summary(summary, epoch, strategy))
