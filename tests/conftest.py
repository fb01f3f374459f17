"""Shared fixtures: real configs composed and shrunk for tests, and a small generated slide project."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig

from src.config import compose

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# A small demo project: few patients and small slides, so a fit takes seconds.
SMALL_DEMO = ["project.demo.n_patients=12", "project.demo.slide_px=1024"]


@pytest.fixture(autouse=True)
def no_hydra_job_after_the_test() -> Iterator[None]:
    """A test that runs train.py or predict.py in this process leaves Hydra's job config set (``hydra.main`` does
    not clear it); later tests would then take Hydra's job folder for their run folder."""
    yield
    if HydraConfig.initialized():
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder shared by the whole session (demo slides and shards are made once)."""
    return tmp_path_factory.mktemp("data")


def tiny_overrides(data_dir: Path, out_dir: Path) -> list[str]:
    """Overrides that make any experiment tiny: small demo, one epoch, CPU, CSV logging only."""
    return [
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out_dir}",
        *SMALL_DEMO,
        "epochs=[1]",
        "batch_size=16",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "torch_threads=1",  # a shared 2-core machine: see one_torch_thread
    ]


@pytest.fixture
def tiny_cfg(data_dir: Path, tmp_path: Path):
    """Compose the main config with tiny settings; call with extra overrides."""

    def make(*overrides: str):
        return compose([*tiny_overrides(data_dir, tmp_path / "outputs"), *overrides])

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads contend and a tiny fit runs ~5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
