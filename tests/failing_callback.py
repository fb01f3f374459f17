"""A Lightning callback that fails in one fold (added with ``+callbacks.fail._target_=...``)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


class FailInFold(pl.Callback):
    """Raises ``RuntimeError`` at the first training batch of the fold whose folder is named ``fold``."""

    def __init__(self, fold: str = "fold2") -> None:
        self.fold = fold

    def on_train_batch_start(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        if Path(trainer.default_root_dir).name == self.fold:
            raise RuntimeError(f"boom in {self.fold}")


class InterruptOnce(pl.Callback):
    """Raises ``RuntimeError`` once, in fold ``fold`` as soon as it has saved a ``last.ckpt`` (an interrupted run).

    ``flag`` is created when it fires; while it exists the callback does nothing, so the same config can
    resume the run.
    """

    def __init__(self, flag: str, fold: str = "fold2") -> None:
        self.flag = Path(flag)
        self.fold = fold

    def on_train_batch_start(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        folder = Path(trainer.default_root_dir)
        if folder.name == self.fold and (folder / "checkpoints" / "last.ckpt").exists() and not self.flag.exists():
            self.flag.touch()
            raise RuntimeError(f"interrupted in {self.fold}")
