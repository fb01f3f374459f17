"""Tiny real fits through the Trainer API on a chosen subset of the small demo project."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from src.config import compose
from src.project import ensure_tiles, load_project
from src.training.fold_trainer import build_trainer
from tests.conftest import tiny_overrides

RECORD = "+callbacks.recorder._target_=tests.training.recorder.Recorder"


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread) -> None:
    """Every training test runs on one intra-op thread (see tests/conftest.py)."""


def pick_patients(annotations, counts: Mapping[str, int], skip: set[str] = frozenset()) -> list[str]:
    """The first ``counts[class]`` patients of each tumour type (annotation order), excluding ``skip``."""
    chosen = []
    for tumor_type, n in counts.items():
        patients = annotations[annotations.tumor_type == tumor_type].patient.drop_duplicates()
        chosen += [p for p in patients if p not in skip][:n]
    return chosen


def train_model(
    data_dir: Path,
    outdir: Path,
    *overrides: str,
    train: Mapping[str, int] | None = None,
    val: Mapping[str, int] | None = None,
):
    """Compose tiny settings + ``overrides``, train on ``train`` patients per class, validate on ``val``.

    Returns:
        (trainer, results, cfg, train_dataset, val_dataset).
    """
    cfg = compose([*tiny_overrides(data_dir, outdir / "outputs"), RECORD, *overrides])
    dataset, labels = load_project(cfg)
    dataset = ensure_tiles(cfg, dataset)
    train_patients = pick_patients(dataset.annotations, train or {"squamous": 2, "adenocarcinoma": 2})
    train_ds = dataset.select_patients(train_patients)
    val_ds = None
    if val != {}:
        val_patients = pick_patients(
            dataset.annotations, val or {"squamous": 1, "adenocarcinoma": 1}, set(train_patients)
        )
        val_ds = dataset.select_patients(val_patients)
    trainer = build_trainer(cfg, outdir / "model", labels)
    results = trainer.train(train_ds, val_ds)
    return trainer, results, cfg, train_ds, val_ds


@pytest.fixture
def fit(data_dir: Path, tmp_path: Path):
    """``fit(*overrides, train=..., val=...)``: a tiny Trainer fit in this test's tmp folder."""

    def run(*overrides: str, **kwargs):
        return train_model(data_dir, tmp_path, *overrides, **kwargs)

    return run


@pytest.fixture(scope="session")
def decay_fit(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One fit shared by several tests: epochs=[1,3], batch_size=8, lr 0.01 halved every 4 optimizer steps,
    validation_balance=none."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    overrides = [
        "epochs=[1,3]",
        "batch_size=8",
        "optimizer.lr=0.01",
        "scheduler=exponential",
        "scheduler.fn.decay=0.5",
        "scheduler.fn.decay_steps=4",
        "validation_balance=none",
    ]
    try:
        return train_model(data_dir, tmp_path_factory.mktemp("decay_fit"), *overrides)
    finally:
        torch.set_num_threads(threads)
