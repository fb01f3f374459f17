"""A Lightning callback that records what the real training loop sees (added via ``+callbacks.recorder``)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

RECORDER = {"_target_": "tests.training.recorder.Recorder"}


class Recorder(pl.Callback):
    """Records per training step: batch size, slide and target of each tile, learning rate, head dtype;
    and the validation batches' tiles and images."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.slides: list[int] = []
        self.targets: list[float] = []
        self.lrs: list[float] = []
        self.head_dtypes: set[torch.dtype] = set()
        self.train_images: list[tuple[int, torch.Tensor]] = []
        self.val_images: list[tuple[int, torch.Tensor]] = []

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        module.net.heads[0].register_forward_hook(self._head_hook)

    def _head_hook(self, head: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if head.training:
            self.head_dtypes.add(output.dtype)

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict, batch_idx: int):
        self.batch_sizes.append(len(batch["target"]))
        self.slides.extend(batch["slide"].tolist())
        self.targets.extend(batch["target"][:, 0].tolist())
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        if len(self.train_images) < 64:
            self.train_images.extend(zip(batch["tile"].tolist(), batch["image"].clone(), strict=True))

    def on_validation_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if len(self.val_images) < 64:
            self.val_images.extend(zip(batch["tile"].tolist(), batch["image"].clone(), strict=True))


def recorder_of(trainer) -> Recorder:
    """The Recorder of a finished ``src.training.fold_trainer.FoldTrainer``."""
    return next(c for c in trainer.module.trainer.callbacks if isinstance(c, Recorder))
