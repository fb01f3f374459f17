"""The LightningModule: trains a TileNet on tiles with slide-inherited labels and evaluates it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Protocol, cast

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerConfig, OptimizerLRSchedulerConfig
from torch import nn

from src.data.transforms import BatchTransform
from src.evaluation.metrics import evaluate
from src.evaluation.predictions import tile_table
from src.losses.outcome_losses import OutcomeLoss
from src.optim.schedulers import build_scheduler
from src.outcomes import Outcome, TargetLayout

# The data modules keep Lightning's default hook: the module's on_after_batch_transfer is the one meant to run.
warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer` in `LightningModule`")


class ValidationRows(Protocol):
    """What the module reads from its data module's ``val_index`` (tiles, or bags for MIL)."""

    tile_weights: np.ndarray | None

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        """Slide (bag) name, patient, target parts and locations (tile counts) of the rows ``indices``."""
        ...


class TileModule(pl.LightningModule):
    """Weakly supervised tile model.

    Args:
        net: The TileNet.
        outcomes: Outcomes in head order.
        losses: One loss per outcome, in the same order; the total loss is their weighted sum.
        optimizer: ``functools.partial`` of a torch optimizer taking the parameters.
        scheduler: Optional partial of a torch LR scheduler taking the optimizer.
        scheduler_interval: ``step`` or ``epoch``.
        l1: Weight of an L1 penalty on all trainable weights (a real penalty, added to the loss).
        channels_last: Train in channels-last memory layout (the net and the batches; faster convolutions on
            GPUs with tensor cores). See :func:`src.models.memory_format.channels_last_setting`.

    Tile batches arrive as uint8; :meth:`on_after_batch_transfer` turns them into the model's input on the
    training device (:class:`~src.data.transforms.BatchTransform`): the data module's stain normalizer, its
    augmentations (training batches only) and the net's input scaling.

    The validation tiles' slides, patients, targets and locations come from the data module's
    :class:`~src.data.datamodule.ValidationIndex` (``trainer.datamodule.val_index``). Subclasses for other
    batches (``src.training.mil_module.MilModule``) override :meth:`batch_outputs`, :meth:`prediction_table`,
    ``index_key`` (the batch key indexing ``val_index``) and ``table_level`` (the level of the table's rows).
    """

    #: Batch key of the row index into the validation index.
    index_key = "tile"

    @property
    def table_level(self) -> str:
        """Level of the rows of :meth:`prediction_table` (the levels above it are averaged from it)."""
        return "tile"

    def __init__(
        self,
        net: nn.Module,
        outcomes: Sequence[Outcome],
        losses: Sequence[OutcomeLoss],
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        l1: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.outcomes = list(outcomes)
        self.layout = TargetLayout(self.outcomes)
        self.losses = list(losses)
        self.loss_fns = nn.ModuleList(loss.fn for loss in self.losses)  # moves buffers with the module
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.l1 = l1
        self.channels_last = bool(channels_last)
        self._batch_transforms: dict[bool, BatchTransform] = {}
        self._draws = torch.Generator()  # per-tile draws of the device-side augmentations (see on_train_epoch_start)
        self.last_evaluation: dict | None = None
        self._val_outputs: list[list[torch.Tensor]] = []
        self._val_tiles: list[torch.Tensor] = []
        self._val_loss: list[torch.Tensor] = []

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One output per outcome for uint8 tiles and clinical inputs."""
        return self.net(image, clinical)

    @property
    def val_index(self) -> ValidationRows | None:
        """The validation index of the data module being fitted (None without validation)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(datamodule, "val_index", None)

    def batch_transform(self, train: bool) -> BatchTransform:
        """The device-side transform of training (``train``) or validation batches (built once per fit)."""
        if train not in self._batch_transforms:
            datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            self._batch_transforms[train] = BatchTransform(
                normalizer=getattr(datamodule, "normalizer", None),
                augment=getattr(datamodule, "augment", None) if train else None,
                scale=getattr(self.net, "scale", None),
                channels_last=self.channels_last,
            )
        return self._batch_transforms[train]

    def on_fit_start(self) -> None:
        """Lay the net out channels-last if asked; the transforms are rebuilt for this fit's data module."""
        self._batch_transforms = {}
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        """Seed this epoch's per-tile draws from the epoch's seed (set by ``EpochSeeds``, a callback, just before).

        A generator of their own: what else draws from torch's global one (loader iterators, dropout) cannot
        shift them, so a resumed epoch draws the tiles an uninterrupted one would. Each DDP rank gets its own.
        """
        self._draws = torch.Generator().manual_seed((torch.initial_seed() + 1_000_003 * self.global_rank) % 2**63)

    def on_after_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Run the device-side transform on a batch of uint8 tiles now on the training device (others pass)."""
        if not isinstance(batch, dict) or self._trainer is None:
            return batch
        image = batch.get("image")
        if image is None or image.dtype != torch.uint8 or image.ndim != 4:
            return batch
        train = self.trainer.training
        return {**batch, "image": self.batch_transform(train)(image, self._draws if train else None)}

    def batch_outputs(self, batch: dict) -> list[torch.Tensor]:
        """The model's outputs for one batch from the data module (tiles scaled on the device, or uint8)."""
        image = batch["image"]
        if image.is_floating_point() and image.ndim == 4 and callable(getattr(self.net, "scale", None)):
            return self.net(image, batch["clinical"], scaled=True)
        return self(image, batch["clinical"])

    def _loss(self, outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        total = outputs[0].new_zeros(())
        for loss, fn, output, part in zip(self.losses, self.loss_fns, outputs, self.layout.split(target), strict=True):
            total = total + loss.weight * fn(output.float(), part)
        return total

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Weighted sum of the outcomes' losses (+ L1 penalty); logs loss and batch metrics."""
        outputs = self.batch_outputs(batch)
        loss = self._loss(outputs, batch["target"])
        if self.l1:
            penalty = sum(p.abs().sum() for n, p in self.named_parameters() if p.requires_grad and p.ndim > 1)
            loss = loss + self.l1 * penalty
        size = len(batch["target"])
        # sync_dist: under DDP the epoch values are means over every rank's batches (weighted by batch size)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        for outcome, output, part in zip(self.outcomes, outputs, self.layout.split(batch["target"]), strict=True):
            for metric, value in outcome.train_metrics(output, part).items():
                name = f"train/{metric}/{outcome.name}"
                self.log(name, value, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        """Reset the gathered validation outputs."""
        self._val_outputs, self._val_tiles, self._val_loss = [], [], []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Loss of the batch (balance-weighted if set) and its outputs, kept for evaluation."""
        outputs = self.batch_outputs(batch)
        index = self.val_index
        weights = index.tile_weights if index is not None else None
        if weights is None:  # (loss × tiles, tiles): val/loss is the tile-weighted mean over every rank
            size = float(len(batch["target"]))
            loss = self._loss(outputs, batch["target"]).detach()
            self._val_loss.append(torch.stack([loss * size, loss.new_tensor(size)]))
        else:  # validation_balance: the loss expected under balanced sampling, exact over every tile
            w = torch.as_tensor(weights[batch[self.index_key].cpu().numpy()], dtype=torch.float32, device=self.device)
            total = w.new_zeros(())
            for value in torch.unique(w):  # balance weights are constant within a slide: few groups
                group = w == value
                total = total + value * group.sum() * self._loss([o[group] for o in outputs], batch["target"][group])
            self._val_loss.append(torch.stack([total.detach(), w.sum()]))
        self._val_outputs.append([o.detach().float().cpu() for o in outputs])
        self._val_tiles.append(batch[self.index_key].detach().cpu())

    def on_validation_epoch_end(self) -> None:
        """Evaluate every validation tile once: prediction tables and metrics per level.

        Under DDP each rank validates its own share of the tiles (``src.samplers.shards``, no padding); the
        losses are summed over the ranks and the outputs gathered by tile index, so every rank evaluates
        exactly the tiles, and gets the metrics, that one process would.
        """
        if self.val_index is None or self.trainer.sanity_checking:
            return
        sums = torch.stack(self._val_loss).sum(0) if self._val_loss else torch.zeros(2, device=self.device)
        if self.trainer.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        if float(sums[1]) > 0:
            self.log("val/loss", sums[0] / sums[1], prog_bar=True, sync_dist=False)  # the same on every rank
        tiles = torch.cat(self._val_tiles).numpy() if self._val_tiles else np.zeros(0, np.int64)
        outputs = [
            torch.cat([batch[i] for batch in self._val_outputs]) if self._val_outputs else torch.zeros(0, o.n_outputs)
            for i, o in enumerate(self.outcomes)
        ]
        if self.trainer.world_size > 1:  # every rank evaluates the full gathered set
            tiles, outputs = self._gather(tiles, outputs)
        if not len(tiles):
            return
        table = self.prediction_table(tiles, outputs)
        metrics, tables = evaluate(table, self.outcomes, level=self.table_level)
        for name, value in metrics.items():
            self.log(f"val/{name}", value, sync_dist=False)  # computed from the gathered set: equal on every rank
        self.last_evaluation = {"epoch": self.current_epoch + 1, "metrics": metrics, "tables": tables}

    def _gather(self, tiles: np.ndarray, outputs: list[torch.Tensor]) -> tuple[np.ndarray, list[torch.Tensor]]:
        """Every rank's validation tiles and outputs, in tile order, each tile once.

        The ranks may hold different numbers of tiles: each pads to the longest with index -1 before the
        all-gather, and the padding (and any tile seen twice) is dropped after it.
        """
        # all_gather of a tensor is a tensor (Lightning types it as any collection)
        longest = int(cast(torch.Tensor, self.all_gather(torch.tensor([len(tiles)], device=self.device))).max())
        index = torch.full((longest,), -1, dtype=torch.long, device=self.device)
        index[: len(tiles)] = torch.as_tensor(tiles, dtype=torch.long, device=self.device)
        gathered = cast(torch.Tensor, self.all_gather(index)).reshape(-1).cpu().numpy()
        keep = gathered >= 0
        all_outputs = []
        for output in outputs:
            padded = torch.zeros((longest, output.shape[1]), dtype=output.dtype, device=self.device)
            padded[: len(output)] = output.to(self.device)
            gathered_output = cast(torch.Tensor, self.all_gather(padded))
            all_outputs.append(gathered_output.reshape(-1, output.shape[1]).cpu()[torch.as_tensor(keep)])
        tiles, first = np.unique(gathered[keep], return_index=True)  # in tile order, as one process reads them
        return tiles, [o[torch.as_tensor(first)] for o in all_outputs]

    def prediction_table(self, tiles: np.ndarray, outputs: list[torch.Tensor]) -> pd.DataFrame:
        """Tile prediction table for validation tile indices ``tiles``."""
        assert self.val_index is not None  # validation runs only with a validation index
        slides, patients, parts, locs = self.val_index.rows(tiles)
        return tile_table(self.outcomes, outputs, parts, slides, patients, locs)

    def configure_optimizers(self) -> OptimizerConfig | OptimizerLRSchedulerConfig:
        """The optimizer over trainable parameters, and the schedule if configured."""
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(parameters)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        steps = (
            self.trainer.estimated_stepping_batches if self.scheduler_interval == "step" else self.trainer.max_epochs
        )
        assert steps is not None  # Lightning sets max_epochs (1000 when not given)
        scheduler = build_scheduler(self.scheduler_factory, optimizer, steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
