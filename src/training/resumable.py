"""What lets a fit be resumed: ``last.ckpt`` every epoch, per-epoch seeds, the logger's run id.

- :class:`LastCheckpoint` writes ``checkpoints/last.ckpt`` at the end of every training epoch (temp name +
  rename, so a kill leaves the previous epoch's file whole). It is a Lightning ``Checkpoint``, so it runs
  after every other callback's epoch end: the file holds their state for that epoch (the results rows and
  saved epochs of :class:`~src.training.callbacks.EpochOutputs`, early stopping), with the weights,
  optimizer, scheduler and loop counters.
- :class:`EpochSeeds` re-seeds Python, NumPy and torch at the start of every epoch from ``(seed, epoch)``,
  and the samplers draw epoch ``e`` from ``(seed, e)`` (``src.samplers.epochs``): what epoch ``e`` draws
  never depends on the epochs before it, so no random state needs saving and a resumed fold draws what an
  uninterrupted one would (with ``dataloader.num_workers=0``; worker processes keep their own streams).
- ``fold_status.json`` says a fold of a run is finished (``src.runs.folds``): its ``last.ckpt`` is then dropped.
- ``logger_id.txt``: the experiment-logger run id of the fold (W&B ``id``), kept so a resumed fold logs to
  the same run.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from src.infra.files import move_file, write_text_atomic
from src.runs.naming import LAST_CHECKPOINT
from src.samplers.epochs import seed_for

LOGGER_ID = "logger_id.txt"


class LastCheckpoint(Checkpoint):
    """Saves ``<fold>/checkpoints/last.ckpt`` at the end of every training epoch, atomically.

    Args:
        fold_dir: The fold folder.
    """

    def __init__(self, fold_dir: str | Path) -> None:
        self.path = Path(fold_dir) / LAST_CHECKPOINT

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Write the checkpoint beside the previous one and rename it over it (the Trainer's ``AtomicCheckpointIO``)."""
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state; every rank calls it, rank 0 writes


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed Python's, NumPy's and torch's global generators for ``epoch`` (0-based) of a fit seeded ``seed``."""
    value = seed_for(seed, epoch)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


class EpochSeeds(pl.Callback):
    """Re-seeds the global generators from ``(seed, epoch)`` when each training epoch starts (see module doc).

    Args:
        seed: The run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Seed this epoch's draws (dropout, augmentation, shuffling)."""
        seed_epoch(self.seed, trainer.current_epoch)


def set_aside_csv_metrics(fold_dir: str | Path) -> list[Path]:
    """Rename the fold's CSV-logger ``metrics.csv`` files (CSVLogger deletes one it finds when it starts).

    Called before a resumed fold's loggers start: the metrics logged before the interruption stay in
    ``metrics.before_resume{N}.csv`` next to the new ``metrics.csv``.

    Returns:
        The new names.
    """
    kept = []
    for path in sorted(Path(fold_dir).glob("*/metrics.csv")):
        n = 1 + len(list(path.parent.glob("metrics.before_resume*.csv")))
        target = path.with_name(f"metrics.before_resume{n}.csv")
        move_file(path, target)
        kept.append(target)
    return kept


def fold_logger_id(fold_dir: str | Path, resume: bool) -> str:
    """The fold's logger run id: the stored one when resuming (if any), else a new one, stored."""
    path = Path(fold_dir) / LOGGER_ID
    if resume and path.exists() and path.read_text().strip():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:16]
    write_text_atomic(path, run_id + "\n")
    return run_id


def plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with NumPy scalars as Python ones (checkpoints are read back with the weights-only unpickler)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
