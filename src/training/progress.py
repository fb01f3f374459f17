"""Plain progress lines for logs that are not a terminal (SLURM ``--output`` files, ``nohup``, CI).

Lightning's progress bars redraw one terminal line; in a log file they print nothing useful (Rich) or a
stream of carriage returns (TQDM). :class:`PlainProgress` prints instead, every ``every_n_steps``
optimizer steps and at the end of each epoch, one line a ``grep`` or ``tail -f`` can read::

    progress: epoch 2/3 step 150 (batch 50/75) 412.3 tiles/s loss 0.6421

Only rank 0 prints; ``tiles/s`` counts every rank's tiles (this rank's × the number of ranks).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
import torch


class PlainProgress(pl.Callback):
    """Prints ``epoch, step, tiles/s, loss`` every ``every_n_steps`` steps when stdout is not a terminal.

    Args:
        every_n_steps: Steps between two lines (``progress.every_n_steps``); 0 turns the lines off.
        when: ``not_tty`` (only when stdout is not a terminal), ``always`` or ``never``.
        stream: Where to print (default: ``sys.stdout`` at print time).
    """

    def __init__(self, every_n_steps: int = 50, when: str = "not_tty", stream: TextIO | None = None) -> None:
        if when not in ("not_tty", "always", "never"):
            raise ValueError(f"progress.when={when!r}: choose not_tty, always or never")
        if int(every_n_steps) < 0:
            raise ValueError(f"progress.every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.when = when
        self.stream = stream
        self._start = time.perf_counter()
        self._tiles = 0

    @property
    def active(self) -> bool:
        """Whether lines are printed (``when`` and whether stdout is a terminal)."""
        if self.every_n_steps == 0 or self.when == "never":
            return False
        stream = self.stream or sys.stdout
        return self.when == "always" or not (hasattr(stream, "isatty") and stream.isatty())

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Start the epoch's clock and tile count."""
        self._start, self._tiles = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count the batch's tiles; print a line every ``every_n_steps`` steps."""
        self._tiles += _batch_size(batch)
        if self.active and trainer.global_rank == 0 and trainer.global_step % self.every_n_steps == 0:
            self._print(trainer, outputs, batch_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """A line at the end of every epoch (its throughput and mean loss)."""
        if self.active and trainer.global_rank == 0:
            self._print(trainer, trainer.callback_metrics.get("train/loss_epoch"), None)

    def _print(self, trainer: pl.Trainer, loss: Any, batch_idx: int | None) -> None:
        if isinstance(loss, dict):
            loss = loss.get("loss")
        seconds = max(time.perf_counter() - self._start, 1e-9)
        rate = self._tiles * max(1, trainer.world_size) / seconds
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        where = "end" if batch_idx is None else f"batch {batch_idx + 1}/{_total(trainer.num_training_batches)}"
        value = f"{float(loss):.4f}" if isinstance(loss, torch.Tensor | float | int) else "n/a"
        line = f"progress: {epoch} step {trainer.global_step} ({where}) {rate:.1f} tiles/s loss {value}"
        print(line, file=self.stream or sys.stdout, flush=True)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict) and "target" in batch:
        return len(batch["target"])
    return 0


def _total(batches: Any) -> str:
    return str(int(batches)) if isinstance(batches, int | float) and batches != float("inf") else "?"
