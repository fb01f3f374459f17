"""Trainer API (Slideflow's shape): ``build_trainer(hp, outdir, labels).train(train_ds, val_ds)``.

train.py's cross-validation uses this same :class:`FoldTrainer` for every fold. It is not Lightning's
``Trainer``: it composes the fold's data module, model, callbacks and loggers, then runs Lightning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config.validate import validate
from src.data.base_datamodule import BaseFoldDataModule
from src.data.datamodule import FoldDataModule
from src.data.dataset import Dataset, SlideLabels
from src.data.normalizers import StainNormalizer
from src.infra.distributed import is_main
from src.losses.outcome_losses import OutcomeLoss, build_losses, check_loss_fits, fit_losses
from src.models.memory_format import channels_last_setting
from src.training.callbacks import EpochOutputs
from src.training.checkpoint import ParamsInCheckpoint
from src.training.checkpoint_io import AtomicCheckpointIO
from src.training.loggers import build_loggers, configure_wandb_env, finish_loggers, logger_group, sweep_tags
from src.training.module import TileModule
from src.training.params import fold_params, write_fold_files
from src.training.quiet import quiet_console
from src.training.resumable import EpochSeeds, LastCheckpoint, fold_logger_id, set_aside_csv_metrics
from src.training.resume_point import check_resumable

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
        self.data: BaseFoldDataModule | None = None  # or the data module ``dataset.datamodule`` names
        self.module: TileModule | None = None

    @property
    def normalizer(self) -> StainNormalizer | None:
        """The stain normalizer fitted on this fold's training tiles (None without one)."""
        return self.data.normalizer if self.data is not None else None

    def train(self, train_ds: Dataset, val_ds: Dataset | None = None, resume_from: str | Path | None = None) -> dict:
        """Train, saving and evaluating at each epoch in ``hp.epochs`` (and ``checkpoints/last.ckpt`` every epoch).

        Args:
            train_ds: The training slides.
            val_ds: The validation slides (None: no validation).
            resume_from: A ``last.ckpt`` of this model (same config, same slides) to continue from: its
                epochs are not trained, saved or evaluated again, and their results rows are kept. It is
                checked first (``src.training.resume_point.check_resumable``).

        Returns:
            ``{"epochs": {"epoch3": {"train/loss": ..., "val/loss": ..., "val/slide_auroc/tumor_type": ...}}}``.
        """
        if resume_from is not None:
            check_resumable(resume_from)  # a damaged or pickled checkpoint: refused before the data is set up
        self.outdir.mkdir(parents=True, exist_ok=True)
        data_module = instantiate(self.hp.dataset.datamodule) if self.hp.dataset.get("datamodule") else FoldDataModule
        self.data = data_module(self.hp, self.labels, train_ds, val_ds, where=self.row_info.get("fold", self.name))
        self.data.setup("fit")
        losses = build_losses(self.hp.loss, [o.name for o in self.outcomes])
        self.module = self._module(losses)
        params = fold_params(self.hp, self.data, self.module.net, self.row_info)
        if is_main():  # under DDP rank 0 writes the fold's files (src.infra.distributed)
            write_fold_files(self.outdir, params, self.data, self.labels)
        epochs = sorted(int(e) for e in self.hp.epochs)
        saver = EpochOutputs(epochs, self.outdir, self.row_info)
        trainer, loggers = self._lightning(epochs, saver, params, resume=resume_from is not None)
        if resume_from is not None:
            log.info("%s: resuming from %s", self.name, resume_from)
        hparams = cast(dict[str, Any], OmegaConf.to_container(self.hp, resolve=True))
        try:  # weights_only: a checkpoint from a run folder is data, never code
            trainer.fit(self.module, datamodule=self.data, ckpt_path=resume_from, weights_only=True)
        except BaseException:  # a W&B run is finished even when the fit fails, and the fit's error is raised
            try:
                finish_loggers(loggers, "failed", None, hparams)
            except Exception as cleanup:  # e.g. a full disk: it must not hide the error that stopped the fit
                log.error("%s: the loggers could not be finalized after the failure: %s", self.name, cleanup)
            raise
        finish_loggers(loggers, "success", _final_metrics(saver.rows), hparams)
        return {"epochs": {f"epoch{row['epoch']}": row for row in saver.rows}}

    def _module(self, losses: list[OutcomeLoss]) -> TileModule:
        """The network (heads scaled by the training targets) wrapped in the LightningModule."""
        hp = self.hp
        assert self.data is not None and self.data.train is not None  # set up by train()
        output_mean, output_scale = fit_losses(losses, self.outcomes, self.data.train.target_parts)
        net = instantiate(hp.model)(
            outcome_sizes=[o.n_outputs for o in self.outcomes],
            n_clinical=self.data.encoder.width,
            output_mean=output_mean,
            output_scale=output_scale,
            **getattr(self.data, "net_kwargs", dict)(),  # e.g. the feature width of MIL bags
        )
        module = instantiate(hp.dataset.module) if hp.dataset.get("module") else TileModule
        return module(
            net,
            self.outcomes,
            losses,
            optimizer=instantiate(hp.optimizer),
            scheduler=instantiate(hp.scheduler.fn) if hp.scheduler.get("fn") else None,
            scheduler_interval=hp.scheduler.get("interval", "step"),
            l1=float(hp.l1),
            channels_last=channels_last_setting(hp.get("channels_last", False), hp.trainer.get("accelerator")),
        )

    def _lightning(
        self, epochs: list[int], saver: EpochOutputs, params: dict[str, Any], resume: bool = False
    ) -> tuple[pl.Trainer, list]:
        """Lightning's Trainer with our callbacks (seeds, epoch outputs, params, last.ckpt) and loggers."""
        hp = self.hp
        assert self.data is not None  # set up by train()
        callbacks = [EpochSeeds(int(hp.seed)), saver, ParamsInCheckpoint(params)]
        callbacks += [instantiate(c) for c in (hp.callbacks or {}).values()]
        if hp.get("progress"):
            callbacks.append(instantiate(hp.progress))
        callbacks.append(LastCheckpoint(self.outdir))  # a Checkpoint: Lightning runs it after the others
        main = is_main()
        if resume and main:
            set_aside_csv_metrics(self.outdir)
        group, job_type = logger_group(self.row_info)
        loggers = build_loggers(
            hp.logger,
            self.outdir,
            name=self.name,
            group=group,
            job_type=job_type,
            hparams=cast(dict[str, Any], OmegaConf.to_container(hp, resolve=True)),
            run_id=fold_logger_id(self.outdir, resume) if main else None,  # the other ranks log nothing
            tags=sweep_tags(self.row_info),
        )
        trainer = instantiate(
            hp.trainer,
            max_epochs=max(epochs),
            callbacks=callbacks,
            logger=loggers or False,
            default_root_dir=str(self.outdir),
            enable_checkpointing=True,  # our LastCheckpoint; Lightning adds none of its own
            plugins=[*_trainer_plugins(hp.trainer), AtomicCheckpointIO()],  # every .ckpt complete or absent
            num_sanity_val_steps=0,
            limit_val_batches=None if self.data.val is not None else 0,  # None: all (and no "100%" message)
            use_distributed_sampler=False,  # the data modules shard by rank themselves (src.samplers.shards)
        )
        return trainer, loggers


def _trainer_plugins(trainer_cfg: DictConfig) -> list:
    """The plugins ``trainer.plugins`` names (built), to which the fold adds its checkpoint writer."""
    plugins = trainer_cfg.get("plugins") if isinstance(trainer_cfg, DictConfig) else None
    if not plugins:
        return []
    built = instantiate(plugins)
    return list(built) if isinstance(built, list | tuple) or OmegaConf.is_list(built) else [built]


def _final_metrics(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last results row's metrics (``train/…``, ``val/…``) and its epoch as ``final_epoch``."""
    if not rows:
        return None
    last = rows[-1]
    return {"final_epoch": last.get("epoch"), **{k: v for k, v in last.items() if k.startswith(("train/", "val/"))}}


def build_trainer(hp: DictConfig, outdir: str | Path, labels: SlideLabels, **kwargs: Any) -> FoldTrainer:
    """Build a :class:`FoldTrainer` (Slideflow's ``sf.model.build_trainer`` shape).

    Raises:
        ValueError: an outcome of ``labels`` does not fit its loss (e.g. categorical labels, linear loss).
    """
    validate(hp, sweep_metric=False)  # the Trainer does not use optimized_metric
    check_loss_fits(hp.loss, labels.outcomes)
    configure_wandb_env()  # as train.py: W&B offline unless a key is configured, so nothing blocks
    quiet_console()  # no library advertisements or foreign deprecations on the console (src.training.quiet)
    pl.seed_everything(int(hp.seed), workers=True, verbose=False)
    return FoldTrainer(hp, outdir, labels, **kwargs)
