"""Each Slideflow hyper-parameter acts in a real (tiny) Trainer fit: epochs, batch size, learning-rate
schedules, optimizers, early stopping, mixed precision."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from src.config import compose
from src.data.tiles import TileIndex
from tests.training.recorder import recorder_of


def n_tiles(dataset) -> int:
    return len(TileIndex.from_shards(dataset.shard_dir, dataset.slides()))


def test_epochs_list_saves_and_evaluates_each_listed_epoch(decay_fit) -> None:
    trainer, results, *_ = decay_fit
    outdir = trainer.outdir
    assert sorted(results["epochs"]) == ["epoch1", "epoch3"]
    assert trainer.module.trainer.current_epoch == 3  # trained to the largest epoch
    for epoch in (1, 3):
        assert (outdir / "checkpoints" / f"epoch{epoch}.ckpt").exists()
        for level in ("tile", "slide", "patient"):
            assert (outdir / "predictions" / f"{level}_val_epoch{epoch}.parquet").exists()
        row = results["epochs"][f"epoch{epoch}"]
        assert math.isfinite(row["val/slide_auroc/tumor_type"]) and math.isfinite(row["val/loss"])
    assert not (outdir / "checkpoints" / "epoch2.ckpt").exists()
    assert list(pd.read_csv(outdir / "results_log.csv").epoch) == [1, 3]
    # the epoch-1 checkpoint really is the model after one epoch
    assert torch.load(outdir / "checkpoints" / "epoch1.ckpt", weights_only=True)["epoch"] == 0


def test_batch_size_sets_the_training_batches(decay_fit) -> None:
    trainer, _, _, train_ds, _ = decay_fit
    recorder = recorder_of(trainer)
    steps_per_epoch = n_tiles(train_ds) // 8  # drop_last
    assert set(recorder.batch_sizes) == {8}
    assert len(recorder.batch_sizes) == 3 * steps_per_epoch


def test_exponential_decay_halves_the_rate_every_decay_steps(decay_fit) -> None:
    trainer, *_ = decay_fit
    lrs = recorder_of(trainer).lrs
    assert len(lrs) > 8
    expected = [0.01 * 0.5 ** (step // 4) for step in range(len(lrs))]
    assert lrs == pytest.approx(expected, rel=1e-6)


def test_sgd_and_cosine_schedule_over_the_whole_run(fit) -> None:
    trainer, _, cfg, train_ds, _ = fit(
        "epochs=[2]", "optimizer=sgd", "optimizer.lr=0.05", "scheduler=cosine", "scheduler.fn.eta_min=0.001", val={}
    )
    optimizer = trainer.module.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == cfg.optimizer.momentum == 0.9
    lrs = recorder_of(trainer).lrs
    total = 2 * (n_tiles(train_ds) // int(cfg.batch_size))
    assert len(lrs) == total
    expected = [0.001 + (0.05 - 0.001) * (1 + math.cos(math.pi * k / total)) / 2 for k in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("monitor", "mode", "epochs"),
    [("val/loss", "min", "[1,6]"), ("val/slide_auroc/tumor_type", "max", "[2,6]")],  # stop epoch unlisted / listed
)
def test_early_stopping_saves_and_evaluates_the_stop_epoch(fit, monitor: str, mode: str, epochs: str) -> None:
    # An improvement threshold no value can meet: the first epoch sets the best, then patience=1 runs out.
    trainer, results, *_ = fit(
        f"epochs={epochs}",
        "callbacks=early_stop",
        f"callbacks.early_stop.monitor={monitor}",
        f"callbacks.early_stop.mode={mode}",
        "callbacks.early_stop.patience=1",
        "callbacks.early_stop.min_delta=1000",
    )
    assert trainer.module.trainer.current_epoch == 2  # stopped long before epoch 6
    assert "epoch2" in results["epochs"] and "epoch6" not in results["epochs"]
    stop = results["epochs"]["epoch2"]
    assert stop["early_stop"] == 1 and math.isfinite(stop["val/slide_auroc/tumor_type"])
    assert (trainer.outdir / "checkpoints" / "epoch2.ckpt").exists()
    assert (trainer.outdir / "predictions" / "slide_val_epoch2.parquet").exists()
    assert not (trainer.outdir / "checkpoints" / "epoch6.ckpt").exists()


def test_bf16_mixed_precision_runs_on_cpu(fit, data_dir: Path) -> None:
    trainer, *_ = fit("trainer.precision=bf16-mixed", "+trainer.limit_train_batches=2", val={})
    recorder = recorder_of(trainer)
    assert len(recorder.batch_sizes) == 2
    assert recorder.head_dtypes == {torch.bfloat16}  # autocast really ran the training forward


def test_full_precision_by_default(decay_fit) -> None:
    assert recorder_of(decay_fit[0]).head_dtypes == {torch.float32}


def test_gpu_trainer_uses_16_bit_mixed_precision() -> None:
    cfg = compose(["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "16-mixed"
    assert compose(["trainer=ddp"]).trainer.precision == "16-mixed"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_mixed_precision_fit(fit) -> None:
    trainer, *_ = fit("trainer=gpu", "+trainer.limit_train_batches=2", val={})
    assert recorder_of(trainer).head_dtypes == {torch.float16}
