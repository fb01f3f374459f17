"""One tiny 2-fold run of train.py's pipeline, shared by the prediction tests, and a helper to predict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import torch

from src.config import compose
from src.inference import run as predict
from src.pipeline import run as train
from tests.conftest import tiny_overrides

FEW_BATCHES = ["+trainer.limit_train_batches=2"]  # the predictions are compared with the run's own evaluation


@pytest.fixture(scope="session")
def tiny_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-fold cross-validated tiny model (one epoch) on the small demo; returns its run folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("predict_run")
    try:
        overrides = [*tiny_overrides(data_dir, out / "outputs"), "validation.k=2", f"run_dir={out / 'run'}"]
        train(compose([*overrides, *FEW_BATCHES]))
    finally:
        torch.set_num_threads(threads)
    return out / "run"


def validation_slides(fold: Path) -> list[str]:
    """The validation slides of a fold folder (its slide_manifest.csv)."""
    manifest = pd.read_csv(fold / "slide_manifest.csv")
    return manifest[manifest.dataset == "validation"].slide.tolist()


def slide_files(data_dir: Path, slides: Sequence[str]) -> str:
    """A ``slides=[...]`` override value for demo slides."""
    return "[" + ",".join(str(data_dir / "demo" / "slides" / f"{s}.svs") for s in slides) + "]"


def predict_cfg(model_path: Path, outdir: Path, *overrides: str):
    """The composed prediction config."""
    overrides = [f"model_path={model_path}", f"outdir={outdir}", "torch_threads=1", *overrides]  # as run_predict
    return compose(overrides, config_name="predict")


def run_predict(model_path: Path, outdir: Path, *overrides: str) -> int:
    """Predict on one torch thread; returns the number of failed slides."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return predict(predict_cfg(model_path, outdir, *overrides))
    finally:
        torch.set_num_threads(threads)
