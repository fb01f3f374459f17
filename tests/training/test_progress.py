"""The plain progress line: printed every N steps when stdout is not a terminal (a SLURM log), never on one."""

from __future__ import annotations

import contextlib
import io
import os
import re
from types import SimpleNamespace

import pytest
import torch

from src.training.progress import PlainProgress

LINE = re.compile(
    r"^progress: epoch (\d+)/(\d+) step (\d+) \((batch \d+/\d+|end)\) ([\d.]+) tiles/s loss ([\d.]+|n/a)$"
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _epoch(callback: PlainProgress, steps: int, world_size: int = 1) -> None:
    trainer = SimpleNamespace(
        global_rank=0, global_step=0, current_epoch=1, max_epochs=3, world_size=world_size, num_training_batches=steps
    )
    trainer.callback_metrics = {"train/loss_epoch": torch.tensor(0.5)}
    callback.on_train_epoch_start(trainer, None)
    for batch in range(steps):
        trainer.global_step += 1
        callback.on_train_batch_end(
            trainer, None, {"loss": torch.tensor(1.0 / (batch + 1))}, {"target": [0] * 8}, batch
        )
    callback.on_train_epoch_end(trainer, None)


def test_lines_every_n_steps_when_not_a_terminal() -> None:
    log = io.StringIO()
    _epoch(PlainProgress(every_n_steps=4, stream=log), steps=10, world_size=2)
    lines = log.getvalue().splitlines()
    assert len(lines) == 3  # steps 4 and 8, and the epoch's end
    parsed = [LINE.match(line).groups() for line in lines]
    assert [p[2] for p in parsed] == ["4", "8", "10"] and {p[:2] for p in parsed} == {("2", "3")}
    assert parsed[0][3] == "batch 4/10" and parsed[-1][3] == "end"
    assert float(parsed[0][5]) == pytest.approx(0.25, abs=1e-4) and float(parsed[-1][5]) == 0.5
    assert all(float(p[4]) > 0 for p in parsed)


def test_nothing_on_a_terminal_or_when_off() -> None:
    for callback in (
        PlainProgress(every_n_steps=1, stream=Terminal()),
        PlainProgress(every_n_steps=0, stream=io.StringIO()),
        PlainProgress(every_n_steps=1, when="never", stream=io.StringIO()),
    ):
        _epoch(callback, steps=5)
        assert callback.stream.getvalue() == ""
    forced = PlainProgress(every_n_steps=5, when="always", stream=Terminal())
    _epoch(forced, steps=5)
    assert len(forced.stream.getvalue().splitlines()) == 2
    with pytest.raises(ValueError, match=r"progress\.when"):
        PlainProgress(when="sometimes")


def test_a_piped_stdout_gets_the_lines() -> None:
    """As under SLURM or ``| tee``: ``sys.stdout`` is a pipe, read at print time (here in this process)."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as reader:
        with os.fdopen(write_end, "w") as pipe, contextlib.redirect_stdout(pipe):
            _epoch(PlainProgress(every_n_steps=2), steps=4)
        printed = reader.read()
    assert [LINE.match(line).group(3) for line in printed.splitlines()] == ["2", "4", "4"]
