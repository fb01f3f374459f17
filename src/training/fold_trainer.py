"""Trainer API (Slideflow's shape): ``build_trainer(hp, outdir, labels).train(train_ds, val_ds)``.

train.py's cross-validation uses this same :class:`FoldTrainer` for every fold. It is not Lightning's
``Trainer``: it composes the fold's data module, model, callbacks and loggers, then runs Lightning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import validate
from src.data.datamodule import FoldDataModule
from src.data.dataset import Dataset, SlideLabels
from src.data.normalizers import StainNormalizer
from src.losses.outcome_losses import OutcomeLoss, build_losses, check_loss_fits, fit_losses
from src.training.callbacks import EpochOutputs
from src.training.checkpoint import ParamsInCheckpoint
from src.training.loggers import build_loggers, configure_wandb_env, finish_loggers, sweep_tags
from src.training.module import TileModule
from src.training.params import fold_params, write_fold_files

log = logging.getLogger(__name__)


class FoldTrainer:
    """Trains one model on a training Dataset and evaluates it on a validation Dataset.

    Args:
        hp: The composed config (hyper-parameters and config groups), as from ``src.config.compose``.
        outdir: Folder for this model's files (params.json, checkpoints, predictions, plots, logs).
        labels: Slide labels from ``Dataset.labels(...)``; carries the outcomes.
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
        self.data: FoldDataModule | None = None
        self.module: TileModule | None = None

    @property
    def normalizer(self) -> StainNormalizer | None:
        """The stain normalizer fitted on this fold's training tiles (None without one)."""
        return self.data.normalizer if self.data is not None else None

    def train(self, train_ds: Dataset, val_ds: Dataset | None = None) -> dict:
        """Train, saving and evaluating at each epoch in ``hp.epochs``.

        Returns:
            ``{"epochs": {"epoch3": {"train/loss": ..., "val/loss": ..., "val/slide_auroc/tumor_type": ...}}}``.
        """
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.data = FoldDataModule(self.hp, self.labels, train_ds, val_ds, where=self.row_info.get("fold", self.name))
        self.data.setup("fit")
        losses = build_losses(self.hp.loss, [o.name for o in self.outcomes])
        self.module = self._module(losses)
        params = fold_params(self.hp, self.data, self.module.net, self.row_info)
        write_fold_files(self.outdir, params, self.data, self.labels)
        epochs = sorted(int(e) for e in self.hp.epochs)
        saver = EpochOutputs(epochs, self.outdir, self.row_info)
        trainer, loggers = self._lightning(epochs, saver, params)
        status = "failed"
        try:
            trainer.fit(self.module, datamodule=self.data)
            status = "success"
        finally:
            finish_loggers(loggers, status)
        return {"epochs": {f"epoch{row['epoch']}": row for row in saver.rows}}

    def _module(self, losses: list[OutcomeLoss]) -> TileModule:
        """The network (heads scaled by the training targets) wrapped in the LightningModule."""
        hp = self.hp
        output_mean, output_scale = fit_losses(losses, self.outcomes, self.data.train.target_parts)
        net = instantiate(hp.model)(
            outcome_sizes=[o.n_outputs for o in self.outcomes],
            n_clinical=self.data.encoder.width,
            output_mean=output_mean,
            output_scale=output_scale,
        )
        return TileModule(
            net,
            self.outcomes,
            losses,
            optimizer=instantiate(hp.optimizer),
            scheduler=instantiate(hp.scheduler.fn) if hp.scheduler.get("fn") else None,
            scheduler_interval=hp.scheduler.get("interval", "step"),
            l1=float(hp.l1),
        )

    def _lightning(self, epochs: list[int], saver: EpochOutputs, params: dict[str, Any]) -> tuple[pl.Trainer, list]:
        """Lightning's Trainer with our callbacks (epoch outputs, params in checkpoints) and loggers."""
        hp = self.hp
        callbacks = [saver, ParamsInCheckpoint(params)] + [instantiate(c) for c in (hp.callbacks or {}).values()]
        loggers = build_loggers(
            hp.logger,
            self.outdir,
            name=self.name,
            group=self.row_info.get("run_id"),
            hparams=OmegaConf.to_container(hp, resolve=True),
            tags=sweep_tags(self.row_info),
        )
        trainer = instantiate(
            hp.trainer,
            max_epochs=max(epochs),
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(self.outdir),
            enable_checkpointing=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if self.data.val is not None else 0,
        )
        return trainer, loggers


def build_trainer(hp: DictConfig, outdir: str | Path, labels: SlideLabels, **kwargs: Any) -> FoldTrainer:
    """Build a :class:`FoldTrainer` (Slideflow's ``sf.model.build_trainer`` shape).

    Raises:
        ValueError: an outcome of ``labels`` does not fit its loss (e.g. categorical labels, linear loss).
    """
    validate(hp, sweep_metric=False)  # the Trainer does not use optimized_metric
    check_loss_fits(hp.loss, labels.outcomes)
    configure_wandb_env()  # as train.py: W&B offline unless a key is configured, so nothing blocks
    pl.seed_everything(int(hp.seed), workers=True, verbose=False)
    return FoldTrainer(hp, outdir, labels, **kwargs)
