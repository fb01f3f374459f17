"""The experiment behind train.py: data → validation plan → one Trainer per fold → summary."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import configure_wandb_env
from src.data.augment import check_augment_config
from src.data.balance import BALANCE_STRATEGIES
from src.data.dataset import Dataset, SlideLabels
from src.data.splits import SplitPlan, plan_splits, study_slides
from src.data.survival import check_fold_events, check_survival_config
from src.evaluation.results_log import append_results, epoch_summary, format_summary, json_safe, summarize
from src.extraction.extract import extract_slides
from src.extraction.shards import read_index
from src.losses.outcome_losses import loss_kinds
from src.models.scaling import check_input_stats
from src.training.trainer import build_trainer

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


def check_config(cfg: DictConfig) -> None:
    """Reject bad values of plain keys before any data is read (config groups are checked by Hydra)."""
    for key in ("training_balance", "validation_balance"):
        if cfg[key] not in BALANCE_STRATEGIES:
            raise ValueError(f"{key}={cfg[key]!r}; choose one of {list(BALANCE_STRATEGIES)}")
    check_augment_config(cfg.get("augment"), cfg.get("normalizer"))
    backbone = (cfg.get("model") or {}).get("backbone") or {}
    check_input_stats(backbone.get("mean"), backbone.get("std"))  # model.backbone.mean/std
    source = (cfg.get("normalizer") or {}).get("source", "dataset")
    if source != "dataset" and not Path(source).is_file():
        raise FileNotFoundError(f"normalizer.source={source!r} is neither 'dataset' nor an existing image file")
    if not cfg.outcomes:
        raise ValueError("outcomes is empty: name at least one annotation column, e.g. outcomes=[tumor_type]")
    if not cfg.epochs or min(cfg.epochs) < 1:
        raise ValueError(f"epochs must list positive epochs, got {list(cfg.epochs or [])}")


def prepare_dataset(
    cfg: DictConfig, before_extraction: Callable[[Dataset, SlideLabels], None] | None = None
) -> tuple[Dataset, object]:
    """Build (and if needed generate) the project, validate labels, then extract missing shards.

    Everything that can be wrong with the annotations (columns, outcomes, patient labels, missing slide
    files) is checked before any tile is extracted; ``before_extraction(dataset, labels)`` runs at that
    point too (the validation plan, so that a bad split setting also fails before any tile is read).
    """
    if cfg.project.get("demo"):
        instantiate(cfg.project.demo).ensure()
    dataset = Dataset(
        cfg.project.annotations,
        slides_dir=cfg.project.slides_dir,
        tiles=OmegaConf.to_container(cfg.tiles, resolve=True),
        shards_dir=cfg.project.shards_dir,
        mpp_override=cfg.project.get("mpp_override"),
    )
    # The slides passing dataset.filters, plus (validation=external) those passing validation.filters.
    dataset = dataset.filter({"slide": study_slides(dataset.annotations, cfg.dataset.filters, validation_filters(cfg))})
    outcomes = list(cfg.outcomes)
    kinds = loss_kinds(cfg.loss, outcomes)
    event = cfg.get("event_header")
    check_survival_config(kinds, event, cfg.get("input_header"), cfg.training_balance)
    missing = [c for c in outcomes + ([event] if event else []) if c not in dataset.annotations.columns]
    if missing:
        raise ValueError(
            f"Unknown outcome column(s) {missing}: annotation columns are {list(dataset.annotations.columns)}"
        )
    dataset = dataset.filter_blank(outcomes + ([event] if event else []))
    labels, _ = dataset.labels(outcomes, kinds, event)
    if before_extraction is not None:
        before_extraction(dataset, labels)
    if not cfg.model.drop_images:
        paths = dataset.slide_paths()
        todo = {s: p for s, p in paths.items() if read_index(dataset.shard_dir, s, p) is None}
        if todo:
            report = extract_slides(
                todo,
                Path(cfg.project.shards_dir),
                dataset.tiles,
                workers=int(cfg.dataset.extraction_workers),
                mpp_override=cfg.project.get("mpp_override"),
            )
            failed = report[report.status == "failed"]
            if len(failed):
                reasons = "; ".join(f"{r.slide}: {r.error}" for r in failed.itertuples())
                raise RuntimeError(f"Tile extraction failed for {len(failed)} slide(s): {reasons}")
        empty = [s for s in dataset.slides() if (read_index(dataset.shard_dir, s) or {}).get("num_tiles", 0) == 0]
        if empty:
            log.warning("Skipping %d slide(s) without any tissue tile: %s", len(empty), empty[:10])
            dataset = dataset.filter({"slide": [s for s in dataset.slides() if s not in set(empty)]})
    return dataset, labels


def validation_filters(cfg: DictConfig) -> dict | None:
    """``validation.filters`` (external validation) as a plain dict, or ``None``."""
    filters = cfg.validation.get("filters")
    return OmegaConf.to_container(filters, resolve=True) if filters else None


def plan_folds(cfg: DictConfig, dataset: Dataset, labels: SlideLabels) -> SplitPlan:
    """The run's folds from ``cfg.validation`` (strategy, splits cache, or a forced ``validation.splits`` file).

    Folds depend on the annotations only (not on which slides yield tiles), so they are made before any
    tile is extracted. The cache lives in ``validation.cache_dir``, by default ``splits/`` next to the
    project annotations.
    """
    validation = cfg.validation
    cache_dir = None
    if validation.get("cache"):
        cache_dir = validation.get("cache_dir") or Path(cfg.project.annotations).parent / "splits"
    # stratify on categorical outcomes, and on the event of a cox outcome (each fold keeps its events)
    strata = [o.name for o in labels.outcomes if o.kind == "categorical"]
    strata += [o.event for o in labels.outcomes if o.kind == "cox"]
    plan = plan_splits(
        instantiate(validation.splitter),
        dataset.annotations,
        strata,
        int(cfg.seed),
        strategy=str(validation.name),
        folds=list(validation.folds) if validation.get("folds") else None,
        cache_dir=cache_dir,
        splits_file=validation.get("splits"),
    )
    check_fold_events(plan.trained_folds(), dataset, labels)
    return plan


def run(cfg: DictConfig) -> float:
    """Run the configured experiment; returns the fold mean of ``cfg.optimized_metric``."""
    configure_wandb_env()
    check_config(cfg)
    instantiate(cfg.validation.splitter)  # bad validation settings fail before any data is read
    out = run_dir(cfg)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    plans: list[SplitPlan] = []
    dataset, labels = prepare_dataset(cfg, before_extraction=lambda ds, lab: plans.append(plan_folds(cfg, ds, lab)))
    plan = plans[0]
    plan.write(out / "splits.json", dataset.annotations)
    folds = plan.trained_folds()
    log.info(
        "Validation: %s, %d fold(s) (%s splits%s)",
        plan.strategy,
        len(plan.folds),
        plan.source,
        f" {plan.path}" if plan.path else "",
    )

    run_id = out.name
    rows = []
    for fold in folds:
        log.info(
            "%s: %d training / %d validation patients", fold.name, len(fold.train_patients), len(fold.val_patients)
        )
        trainer = build_trainer(
            cfg,
            out / fold.name,
            labels,
            name=f"{cfg.name}-{fold.name}",
            row_info={"run_id": run_id, "strategy": plan.strategy, "fold": fold.name},
        )
        val_ds = dataset.select_patients(fold.val_patients) if fold.val_patients else None
        results = trainer.train(dataset.select_patients(fold.train_patients), val_ds)
        rows.extend(results["epochs"].values())
    append_results(Path(cfg.results_log), rows)
    summary = summarize(rows)
    last = max(int(e) for e in cfg.epochs)
    final = epoch_summary(summary, last)
    (out / "summary.json").write_text(
        json.dumps(
            json_safe(
                {
                    "run_id": run_id,
                    "strategy": plan.strategy,
                    "folds": [f.name for f in folds],
                    "epoch": last,
                    "metrics": final,
                    "by_epoch": summary.to_dict("records"),
                }
            ),
            indent=2,
        )
    )
    print_summary(summary, last, plan.strategy)
    metric = (final.get(cfg.optimized_metric) or {}).get("mean")
    metric = float("nan") if metric is None else float(metric)
    print(f"\n{cfg.optimized_metric} (mean over {len(folds)} fold(s), epoch {last}): {metric:.4f}")
    print(f"Run folder: {out}")
    return metric if not math.isnan(metric) else float("nan")


def print_summary(summary: pd.DataFrame, epoch: int, strategy: str = "") -> None:
    """Print mean ± sd (95% interval) of each validation metric at ``epoch``."""
    print("\n" + format_summary(summary, epoch, strategy))
