"""Callback that saves and fully evaluates the model at each epoch listed in ``epochs``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from src.evaluation.plots import outcome_plots
from src.evaluation.results_log import append_results
from src.infra.files import atomic_path
from src.training.module import TileModule
from src.training.resumable import plain_row


class EpochOutputs(pl.Callback):
    """At each listed epoch (and at an early-stop epoch): checkpoint, predictions, plots, results row.

    Args:
        epochs: Epochs (1-based) at which to save and evaluate.
        outdir: The fold folder.
        row_info: Columns prepended to every results row (run id, fold, ...).

    Its rows and saved epochs are part of every checkpoint (``state_dict``): a fold resumed from
    ``last.ckpt`` neither writes the epochs it already saved again nor loses their rows.
    """

    def __init__(self, epochs: Sequence[int], outdir: Path, row_info: dict | None = None) -> None:
        self.epochs = sorted(set(int(e) for e in epochs))
        self.outdir = Path(outdir)
        self.row_info = dict(row_info or {})
        self.rows: list[dict] = []
        self._saved: set[int] = set()

    def state_dict(self) -> dict[str, Any]:
        """The results rows so far and the epochs already saved."""
        return {"rows": [plain_row(row) for row in self.rows], "saved": sorted(self._saved)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the rows and saved epochs of a checkpoint (a resumed fold)."""
        self.rows = [dict(row) for row in state_dict.get("rows", [])]
        self._saved = {int(e) for e in state_dict.get("saved", [])}

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Save and evaluate when this epoch is listed in ``epochs``."""
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:  # an early stop decided at this epoch's validation is flagged too
            self.save(trainer, module, epoch, early_stop=trainer.should_stop)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """After an early stop, save and evaluate the stop epoch too."""
        epoch = trainer.current_epoch + (0 if trainer.should_stop else 1)
        epoch = max(1, min(epoch, trainer.max_epochs or epoch))
        if trainer.should_stop and epoch not in self._saved:  # early stop: keep the stop epoch too
            self.save(trainer, module, epoch, early_stop=True)

    def save(self, trainer: pl.Trainer, module: pl.LightningModule, epoch: int, early_stop: bool = False) -> None:
        """Write everything for ``epoch``; only rank 0 writes files.

        The row is made before the checkpoint is saved, so ``epoch{N}.ckpt`` holds it: a fold whose
        ``last.ckpt`` is unusable can continue from that file (``src.training.resume_point``) with its rows.
        """
        if epoch in self._saved:
            return
        self._saved.add(epoch)
        metrics = trainer.callback_metrics  # on every rank: it reduces the sync_dist metrics (a collective)
        row = self._row(trainer, module, metrics, epoch, early_stop) if trainer.global_rank == 0 else None
        if row is not None:
            self.rows.append(row)
        trainer.save_checkpoint(self.outdir / "checkpoints" / f"epoch{epoch}.ckpt", weights_only=False)  # + optimizer
        if row is not None:
            # an epoch re-done after a kill (its row written, its last.ckpt not) replaces its row
            append_results(self.outdir / "results_log.csv", [row], replace={"epoch": epoch})

    def _row(
        self, trainer: pl.Trainer, module: pl.LightningModule, metrics: dict, epoch: int, early_stop: bool
    ) -> dict[str, Any]:
        """Rank 0: the results row of ``epoch``, after writing its predictions and plots."""
        row = {**self.row_info, "epoch": epoch, "early_stop": int(early_stop)}
        for key in ("train/loss_epoch", "val/loss"):
            value = metrics.get(key)
            if value is not None:
                row[key.replace("_epoch", "")] = float(value)
        for key, value in metrics.items():
            if key.startswith("train/accuracy"):
                row[key] = float(value)
        evaluation = getattr(module, "last_evaluation", None)
        if evaluation is not None and evaluation["epoch"] == epoch:
            row.update(
                {f"val/{k}": (v if not math.isnan(v) else float("nan")) for k, v in evaluation["metrics"].items()}
            )
            predictions = self.outdir / "predictions"
            predictions.mkdir(parents=True, exist_ok=True)
            for level, table in evaluation["tables"].items():
                with atomic_path(predictions / f"{level}_val_epoch{epoch}.parquet") as tmp:
                    table.to_parquet(tmp, index=False)
            assert isinstance(module, TileModule)  # the module that evaluates (tile or MIL)
            outcome_plots(evaluation["tables"], module.outcomes, self.outdir / "plots", epoch)
        return row
