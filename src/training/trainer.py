"""Trainer API (Slideflow's shape): ``build_trainer(hp, outdir, labels).train(train_ds, val_ds)``.

train.py's cross-validation uses this same Trainer for every fold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, WeightedRandomSampler

from src.config import configure_wandb_env
from src.data.balance import resolve_balance, tile_weights
from src.data.clinical import ClinicalEncoder
from src.data.dataset import Dataset, SlideLabels
from src.data.normalizers import StainNormalizer
from src.data.survival import check_training_events, survival_sampler
from src.data.tiles import SlideFeatureDataset, TileDataset, TileIndex
from src.data.transforms import tile_transform
from src.losses.outcome_losses import build_losses, check_loss_fits, fit_losses
from src.training.callbacks import EpochOutputs
from src.training.checkpoint import ParamsInCheckpoint
from src.training.module import TileModule

log = logging.getLogger(__name__)


class Trainer:
    """Trains one model on a training Dataset and evaluates it on a validation Dataset.

    Args:
        hp: The composed config (hyper-parameters and config groups), as from ``src.config.compose``.
        outdir: Folder for this model's files (params.json, checkpoints, predictions, plots, logs).
        labels: Slide labels from ``Dataset.labels(...)``; carries the outcome encodings.
        name: Model name used in logs and results rows.
        row_info: Extra columns for every results row (run id, fold, strategy).
    """

    def __init__(
        self, hp: DictConfig, outdir: str | Path, labels: SlideLabels, name: str = "model", row_info: dict | None = None
    ) -> None:
        self.hp = hp
        self.outdir = Path(outdir)
        self.labels = labels
        self.outcomes = labels.outcomes
        self.name = name
        self.row_info = {"model": name, **(row_info or {})}
        self.module: TileModule | None = None
        self.normalizer: StainNormalizer | None = None

    # ------------------------------------------------------------------ data
    def _usable(self, dataset: Dataset) -> tuple[list[str], dict[str, str]]:
        slides = [s for s in dataset.slides() if s in self.labels]
        return slides, dataset.patients()

    def _clinical(self, train_ds: Dataset, val_ds: Dataset | None) -> tuple[Dataset, Dataset | None, ClinicalEncoder]:
        columns = list(self.hp.input_header or [])
        if not columns:
            return train_ds, val_ds, ClinicalEncoder([])
        datasets = []
        for dataset in (train_ds, val_ds):
            if dataset is None:
                datasets.append(None)
                continue
            kept = dataset.filter_blank(columns)
            dropped = len(dataset) - len(kept)
            if dropped and self.hp.clinical_blank == "error":
                blank = sorted(set(dataset.slides()) - set(kept.slides()))
                raise ValueError(f"{dropped} slide(s) have blank clinical inputs {columns}: {blank[:10]}")
            if dropped:
                log.warning("Dropped %d slide(s) with blank clinical inputs %s", dropped, columns)
            datasets.append(kept)
        encoder = ClinicalEncoder.fit(datasets[0].annotations, columns)
        return datasets[0], datasets[1], encoder

    def _tile_dataset(self, dataset: Dataset, slides: list[str], encoder: ClinicalEncoder, train: bool):
        table = dataset.annotations.set_index("slide").loc[slides].reset_index()
        clinical = encoder.transform(table)
        targets = self.labels.targets(slides)
        if self.hp.model.drop_images:
            return SlideFeatureDataset(slides, targets, clinical), None
        index = TileIndex.from_shards(dataset.shard_dir, slides)
        data = TileDataset(index, targets, clinical)
        if train and self.hp.get("normalizer"):  # fitted on training tiles (or a reference tile) only
            self.normalizer = instantiate(self.hp.normalizer).fit_source(data.read_image, len(data), int(self.hp.seed))
            log.info("Stain normalizer fitted: %s", self.normalizer.get_fit())
        augment = instantiate(self.hp.augment) if train and self.hp.augment else None
        data.transform = tile_transform(augment, self.normalizer, train)
        return data, index

    def _balance_weights(self, key: str, index: TileIndex | None, slides, patients) -> np.ndarray | None:
        """Per-tile weights of the ``training_balance``/``validation_balance`` strategy (None: unweighted)."""
        first = self.outcomes[0]
        strategy = resolve_balance(self.hp[key], first.kind == "categorical")
        slide_idx = index.slide_idx if index is not None else np.arange(len(slides))
        categories = self.labels.targets(slides)[:, 0].astype(int) if first.kind == "categorical" else None
        return tile_weights(strategy, slide_idx, [patients[s] for s in slides], categories)

    def _loader(self, dataset, index: TileIndex | None, slides, patients, train: bool) -> DataLoader:
        hp = self.hp
        loader_cfg = hp.dataloader
        sampler, shuffle = None, False
        first = self.outcomes[0]
        if train and first.kind == "cox":  # event-aware batches (src.data.survival)
            slide_idx = index.slide_idx if index is not None else np.arange(len(slides))
            sampler = survival_sampler(
                hp.training_balance,
                slide_idx,
                [patients[s] for s in slides],
                self.labels.targets(slides)[:, 1],
                int(hp.batch_size),
                int(hp.loss.get("min_events_per_batch", 1)),
                int(hp.seed),
            )
            shuffle = sampler is None
        elif train:
            weights = self._balance_weights("training_balance", index, slides, patients)
            if weights is None:
                shuffle = True
            else:
                generator = torch.Generator().manual_seed(int(hp.seed))
                sampler = WeightedRandomSampler(
                    weights, num_samples=len(weights), replacement=True, generator=generator
                )
        workers = int(loader_cfg.num_workers)
        return DataLoader(
            dataset,
            batch_size=int(hp.batch_size if train else loader_cfg.eval_batch_size),
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=train and len(dataset) > int(hp.batch_size),
        )

    # --------------------------------------------------------------- training
    def train(self, train_ds: Dataset, val_ds: Dataset | None = None) -> dict:
        """Train, saving and evaluating at each epoch in ``hp.epochs``.

        Returns:
            ``{"epochs": {"epoch3": {"train/loss": ..., "val/loss": ..., "val/slide_auroc/tumor_type": ...}}}``.
        """
        hp = self.hp
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.normalizer = None
        train_ds, val_ds, encoder = self._clinical(train_ds, val_ds)
        train_slides, patients = self._usable(train_ds)
        if not train_slides:
            raise ValueError("No training slides with labels")
        check_training_events(self.outcomes, self.labels.targets(train_slides), self.row_info.get("fold", self.name))
        train_data, train_index = self._tile_dataset(train_ds, train_slides, encoder, train=True)
        train_loader = self._loader(train_data, train_index, train_slides, patients, train=True)

        losses = build_losses(hp.loss, [o.name for o in self.outcomes])
        output_mean, output_scale = fit_losses(losses, self.outcomes, self.labels.targets(train_slides))
        net = instantiate(hp.model)(
            outcome_sizes=[o.n_outputs for o in self.outcomes],
            n_clinical=encoder.width,
            output_mean=output_mean,
            output_scale=output_scale,
        )
        scheduler = instantiate(hp.scheduler.fn) if hp.scheduler.get("fn") else None
        module = TileModule(
            net,
            self.outcomes,
            losses,
            optimizer=instantiate(hp.optimizer),
            scheduler=scheduler,
            scheduler_interval=hp.scheduler.get("interval", "step"),
            l1=float(hp.l1),
        )
        self.module = module

        val_loader, val_slides = None, []
        if val_ds is not None:
            val_slides, val_patients = self._usable(val_ds)
            patients = {**patients, **val_patients}
        if val_slides:
            val_data, val_index = self._tile_dataset(val_ds, val_slides, encoder, train=False)
            val_loader = self._loader(val_data, val_index, val_slides, patients, train=False)
            n = len(val_data)
            module.val_context = {
                "slides": val_slides,
                "patients": [patients[s] for s in val_slides],
                "targets": self.labels.targets(val_slides),
                "slide_idx": val_index.slide_idx if val_index is not None else np.arange(n),
                "locs": val_index.loc if val_index is not None else np.zeros((n, 2), np.int64),
                "tile_weights": self._balance_weights("validation_balance", val_index, val_slides, patients),
            }

        params = self._write_params(encoder, train_slides, val_slides, train_ds, val_ds)
        epochs = sorted(int(e) for e in hp.epochs)
        saver = EpochOutputs(epochs, self.outdir, self.row_info)
        # params (outcomes, clinical fit, norm_fit, hyper-parameters) go inside every checkpoint too
        callbacks = [saver, ParamsInCheckpoint(params)] + [instantiate(c) for c in (hp.callbacks or {}).values()]
        loggers = [instantiate(c, save_dir=str(self.outdir)) for c in (hp.logger or {}).values()]
        trainer = instantiate(
            hp.trainer,
            max_epochs=max(epochs),
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(self.outdir),
            enable_checkpointing=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if val_loader is not None else 0,
        )
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
        for logger in loggers:
            if hasattr(logger, "experiment") and type(logger).__name__ == "WandbLogger":
                logger.experiment.finish()
        return {"epochs": {f"epoch{row['epoch']}": row for row in saver.rows}}

    def _write_params(
        self,
        encoder: ClinicalEncoder,
        train_slides: Sequence[str],
        val_slides: Sequence[str],
        train_ds: Dataset,
        val_ds: Dataset | None,
    ) -> dict:
        hp = self.hp
        tiles = train_ds.tiles
        params = {
            "model_name": self.name,
            "outcomes": [o.to_dict() for o in self.outcomes],
            "input_header": list(hp.input_header or []),
            "clinical_encoder": encoder.to_dict(),
            "tile_px": tiles.tile_px if tiles else None,
            "tile_um": tiles.tile_um if tiles else None,
            "tile_settings": tiles.__dict__ if tiles else None,
            "norm_fit": self.normalizer.get_fit() if self.normalizer is not None else None,
            "input_stats": self.module.net.input_stats(),  # the model's input scaling (also in its buffers)
            "hp": OmegaConf.to_container(hp, resolve=True),
            **self.row_info,
        }
        (self.outdir / "params.json").write_text(json.dumps(params, indent=2, default=str))
        labels = []
        for dataset, slides, kind in ((train_ds, train_slides, "training"), (val_ds, val_slides, "validation")):
            patients = dataset.patients() if dataset is not None else {}
            for slide in slides:
                labels.append(
                    {
                        "slide": slide,
                        "patient": patients.get(slide),
                        "dataset": kind,
                        "outcome_label": self.labels[slide],
                    }
                )
        pd.DataFrame(labels).to_csv(self.outdir / "slide_manifest.csv", index=False)
        return params


def build_trainer(hp: DictConfig, outdir: str | Path, labels: SlideLabels, **kwargs) -> Trainer:
    """Build a :class:`Trainer` (Slideflow's ``sf.model.build_trainer`` shape).

    Raises:
        ValueError: an outcome of ``labels`` does not fit its loss (e.g. categorical labels, linear loss).
    """
    check_loss_fits(hp.loss, labels.outcomes)
    configure_wandb_env()  # as train.py: W&B offline unless a key is configured, so nothing blocks
    pl.seed_everything(int(hp.seed), workers=True, verbose=False)
    return Trainer(hp, outdir, labels, **kwargs)
