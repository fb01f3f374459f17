"""The fold data module of each tile source, set up on the same demo patients."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from src.config import compose
from src.data.datamodule import FoldDataModule
from src.project import ensure_tiles, load_project
from tests.conftest import tiny_overrides
from tests.training.conftest import pick_patients

# 5 patients, 7 slides: squamous P001 (2 slides), P002, P003, P005 (2 slides); adenocarcinoma P004 (1 slide).
IMBALANCED = {"squamous": 4, "adenocarcinoma": 1}
VALIDATION = {"squamous": 1, "adenocarcinoma": 1}
SOURCES = ("shards", "wsi", "shards_stream")


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread) -> None:
    """One intra-op thread (see tests/conftest.py)."""


def source_module(
    data_dir: Path,
    out_dir: Path,
    source: str,
    *overrides: str,
    train: Mapping[str, int] = IMBALANCED,
    val: Mapping[str, int] = VALIDATION,
) -> FoldDataModule:
    """The set-up data module of ``dataset=<source>`` for ``train`` / ``val`` patients per class."""
    cfg = compose([*tiny_overrides(data_dir, out_dir), f"dataset={source}", "augment=none", *overrides])
    dataset, labels = load_project(cfg)
    dataset = ensure_tiles(cfg, dataset)
    train_patients = pick_patients(dataset.annotations, train)
    val_patients = pick_patients(dataset.annotations, val, set(train_patients))
    module = FoldDataModule(
        cfg, labels, dataset.select_patients(train_patients), dataset.select_patients(val_patients), where=source
    )
    module.setup("fit")
    return module


@pytest.fixture
def make_module(data_dir: Path, tmp_path: Path):
    """``make_module(source, *overrides, train=..., val=...)``: a set-up FoldDataModule."""

    def make(source: str, *overrides: str, **kwargs) -> FoldDataModule:
        return source_module(data_dir, tmp_path / "outputs", source, *overrides, **kwargs)

    return make


def drawn_slides(loader, epochs: int) -> torch.Tensor:
    """The slide of every training tile the loader yields over ``epochs`` epochs (Lightning sets each epoch)."""
    slides = []
    for epoch in range(epochs):
        for obj in (getattr(loader, "sampler", None), getattr(loader.batch_sampler, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        slides.extend(batch["slide"] for batch in loader)
    return torch.cat(slides)
