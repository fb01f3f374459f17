"""The experiment behind train.py: data → validation plan → one Trainer per fold → summary."""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import configure_wandb_env
from src.data.augment import parse_codes
from src.data.balance import BALANCE_STRATEGIES
from src.data.dataset import Dataset
from src.data.splits import patient_table
from src.data.survival import check_fold_events, check_survival_config
from src.evaluation.results_log import append_results, summarize
from src.extraction.extract import extract_slides
from src.extraction.shards import read_index
from src.losses.outcome_losses import loss_kinds
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
    if cfg.augment:
        parse_codes(cfg.augment.get("codes"))
    if not cfg.outcomes:
        raise ValueError("outcomes is empty: name at least one annotation column, e.g. outcomes=[tumor_type]")
    if not cfg.epochs or min(cfg.epochs) < 1:
        raise ValueError(f"epochs must list positive epochs, got {list(cfg.epochs or [])}")


def prepare_dataset(cfg: DictConfig) -> tuple[Dataset, object]:
    """Build (and if needed generate) the project, validate labels, then extract missing shards.

    Everything that can be wrong with the annotations (columns, outcomes, patient labels, missing slide
    files) is checked before any tile is extracted.
    """
    if cfg.project.get("demo"):
        instantiate(cfg.project.demo).ensure()
    dataset = Dataset(
        cfg.project.annotations,
        slides_dir=cfg.project.slides_dir,
        tiles=OmegaConf.to_container(cfg.tiles, resolve=True),
        shards_dir=cfg.project.shards_dir,
        filters=OmegaConf.to_container(cfg.dataset.filters, resolve=True) if cfg.dataset.filters else None,
        mpp_override=cfg.project.get("mpp_override"),
    )
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
    if not cfg.model.drop_images:
        paths = dataset.slide_paths()
        todo = {s: p for s, p in paths.items() if read_index(dataset.shard_dir, s) is None}
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


def run(cfg: DictConfig) -> float:
    """Run the configured experiment; returns the fold mean of ``cfg.optimized_metric``."""
    configure_wandb_env()
    check_config(cfg)
    out = run_dir(cfg)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    dataset, labels = prepare_dataset(cfg)
    outcomes = labels.outcomes

    strata = [o.name for o in outcomes if o.kind == "categorical"] + [o.event for o in outcomes if o.kind == "cox"]
    splitter = instantiate(cfg.validation.splitter)
    folds = splitter.split(patient_table(dataset.annotations, strata), seed=int(cfg.seed))
    check_fold_events(folds, dataset, labels)
    (out / "splits.json").write_text(
        json.dumps(
            {
                "strategy": cfg.validation.name,
                "seed": int(cfg.seed),
                "folds": [
                    {
                        **f.to_dict(),
                        "train_slides": dataset.select_patients(f.train_patients).slides(),
                        "val_slides": dataset.select_patients(f.val_patients).slides(),
                    }
                    for f in folds
                ],
            },
            indent=2,
        )
    )

    run_id = out.name
    rows = []
    for fold in folds:
        overlap = set(fold.train_patients) & set(fold.val_patients)
        if overlap:
            raise RuntimeError(f"Patients in both training and validation of {fold.name}: {sorted(overlap)[:5]}")
        log.info(
            "%s: %d training / %d validation patients", fold.name, len(fold.train_patients), len(fold.val_patients)
        )
        trainer = build_trainer(
            cfg,
            out / fold.name,
            labels,
            name=f"{cfg.name}-{fold.name}",
            row_info={"run_id": run_id, "strategy": cfg.validation.name, "fold": fold.name},
        )
        results = trainer.train(
            dataset.select_patients(fold.train_patients), dataset.select_patients(fold.val_patients)
        )
        rows.extend(results["epochs"].values())
    append_results(Path(cfg.results_log), rows)
    summary = summarize(rows) if rows else pd.DataFrame()
    last = max(int(e) for e in cfg.epochs)
    final = (
        {
            r["metric"]: {"mean": r["mean"], "sd": r["sd"], "n": r["n"], "ci95": [r["ci95_low"], r["ci95_high"]]}
            for r in summary.to_dict("records")
            if r["epoch"] == last
        }
        if len(summary)
        else {}
    )
    (out / "summary.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "strategy": cfg.validation.name,
                "folds": [f.name for f in folds],
                "epoch": last,
                "metrics": final,
                "by_epoch": summary.to_dict("records") if len(summary) else [],
            },
            indent=2,
            default=float,
        )
    )
    print_summary(summary, last)
    metric = final.get(cfg.optimized_metric, {}).get("mean", float("nan"))
    print(f"\n{cfg.optimized_metric} (mean over {len(folds)} fold(s), epoch {last}): {metric:.4f}")
    print(f"Run folder: {out}")
    return metric if not math.isnan(metric) else float("nan")


def print_summary(summary: pd.DataFrame, epoch: int) -> None:
    """Print mean ± sd (95% interval) of each validation metric at ``epoch``."""
    if not len(summary):
        return
    table = summary[(summary.epoch == epoch) & summary.metric.str.startswith("val/")]
    print(f"\nValidation metrics at epoch {epoch} (over folds):")
    for r in table.itertuples():
        print(f"  {r.metric:<40} {r.mean:.4f} ± {r.sd:.4f}  (95% CI {r.ci95_low:.4f} – {r.ci95_high:.4f}, n={r.n})")
