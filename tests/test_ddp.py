"""DDP on CPU (``trainer=ddp_cpu``: 2 processes, gloo), run as a user does: train.py in a subprocess.

Lightning re-runs the command for rank 1, so this cannot run in-process (as Lightning's and
lightning-hydra-template's own DDP tests). Checked: one run folder, one results row per fold × epoch, one
summary, rank 1 writes nothing, and the DDP validation metrics equal a single-process evaluation of the
same checkpoint on the same fold (every validation tile exactly once), computed here with scikit-learn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from src.config import REPO_ROOT, compose
from src.data.tiles import TileDataset
from src.project import dataset_from_config
from src.training.checkpoint import load_model, predict
from tests.conftest import tiny_overrides

FOLDS = ["fold1", "fold2"]


def _single_process_evaluation(cfg, run: Path, fold: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """Tile probabilities of the fold's epoch-1 checkpoint on its validation slides, and sklearn AUROCs."""
    model = load_model(run / fold / "checkpoints" / "epoch1.ckpt")
    (entry,) = [f for f in json.loads((run / "splits.json").read_text())["folds"] if f["name"] == fold]
    dataset = dataset_from_config(cfg)
    val = dataset.filter({"slide": entry["val_slides"]})
    index = val.tile_index()
    data = TileDataset(index, np.zeros((len(index.slides), 1)))
    probs = []
    for start in range(0, len(data), 64):
        images = torch.stack([data[i]["image"] for i in range(start, min(start + 64, len(data)))])
        probs.append(predict(model, images)[0])
    classes = model.outcomes[0].classes
    labels = val.annotations.set_index("slide")["tumor_type"]
    tiles = pd.DataFrame(
        {
            "slide": np.asarray(index.slides)[index.slide_idx],
            "loc_x": index.loc[:, 0],
            "loc_y": index.loc[:, 1],
            "p1": np.concatenate(probs)[:, 1],
        }
    )
    tiles["y"] = [classes.index(labels[s]) for s in tiles.slide]
    slides = tiles.groupby("slide")[["p1", "y"]].mean()
    metrics = {
        "val/tile_auroc/tumor_type": roc_auc_score(tiles.y, tiles.p1),
        "val/slide_auroc/tumor_type": roc_auc_score(slides.y, slides.p1),
        "val/tile_accuracy/tumor_type": float(((tiles.p1 > 0.5) == tiles.y).mean()),
    }
    return tiles, metrics


@pytest.mark.slow
def test_ddp_cpu_run_equals_a_single_process_evaluation(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    overrides = [*tiny_overrides(data_dir, out), f"validation.folds=[{','.join(f[-1] for f in FOLDS)}]"]
    cfg = compose(overrides)
    dataset_from_config(cfg)  # the demo and its shards first, so the DDP run only trains (and a timeout is rare)
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "DDP_WRITES_UNDER": str(out),
        "DDP_WRITES_DIR": str(tmp_path / "writes"),
    }
    result = subprocess.run(
        [sys.executable, "tests/ddp_writes.py", *overrides, "trainer=ddp_cpu"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "distributed_backend=gloo" in result.stderr and "Starting with 2 processes" in result.stderr

    (run,) = (out / "runs").iterdir()  # exactly one run folder
    assert result.stdout.count("Run folder:") == 1 and result.stdout.count("Validation metrics at epoch") == 1
    assert "No validation metrics" not in result.stdout + result.stderr
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["folds"] == FOLDS and summary["metrics"]["val/slide_auroc/tumor_type"]["n"] == len(FOLDS)
    rows = pd.read_csv(out / "results_log.csv")
    assert sorted(zip(rows.fold, rows.epoch, strict=True)) == [(f, 1) for f in FOLDS]  # one row per fold × epoch

    # rank 1 wrote nothing under the outputs but its own Hydra log; rank 0 wrote the run's files
    records = {p.name.split("-")[0]: p.read_text().split() for p in (tmp_path / "writes").iterdir()}
    assert set(records) == {"rank0", "rank1"}, records.keys()
    assert {Path(p).name for p in records["rank1"]} <= {"train_ddp_process_1.log"}, records["rank1"]
    for name in ("config.yaml", "splits.json", "status.json", "summary.json", "results_log.csv"):
        assert any(Path(p).name == name for p in records["rank0"]), name

    for fold, row in zip(FOLDS, rows.sort_values("fold").to_dict("records"), strict=True):
        tiles, expected = _single_process_evaluation(cfg, run, fold)
        ddp = pd.read_parquet(run / fold / "predictions" / "tile_val_epoch1.parquet")
        assert len(ddp) == len(tiles) and not ddp.duplicated(["slide", "loc_x", "loc_y"]).any()  # each tile once
        both = tiles.merge(ddp, on=["slide", "loc_x", "loc_y"], validate="one_to_one")
        assert len(both) == len(tiles)
        np.testing.assert_allclose(both["tumor_type-y_pred1"], both.p1, atol=1e-5)
        gap = (both["tumor_type-y_pred1"] - both.p1).abs().max()
        print(f"{fold}: {len(tiles)} validation tiles, max |p_DDP - p_single| = {gap:.2e}")
        for metric, value in expected.items():
            print(f"{fold} {metric}: DDP {row[metric]:.6f}, single process {value:.6f}")  # pytest -s shows them
            assert row[metric] == pytest.approx(value, abs=1e-6), (fold, metric)
        assert np.isfinite(row["train/loss"]) and np.isfinite(row["val/loss"])


@pytest.mark.slow  # ~20 s: Hydra starts a sweep in a subprocess
def test_multirun_with_ddp_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.output_dir={out}",
            "trainer=ddp_cpu",
            "validation.folds=[1],[2]",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert result.returncode != 0
    assert "cannot run in a Hydra multirun" in result.stderr and "hydra/launcher=slurm_gpu" in result.stderr
    assert not (tmp_path / "data").exists() and not (out / "runs").exists()  # no demo, no run folder
    assert not list(out.glob("multirun/*/*/config.yaml"))  # no job started


@pytest.mark.parametrize(
    ("trainer", "processes"),
    [
        ({"strategy": "ddp", "devices": 2}, 2),
        ({"strategy": "ddp", "devices": 4, "num_nodes": 2}, 8),
        ({"strategy": {"_target_": "pytorch_lightning.strategies.DDPStrategy"}, "devices": 2}, 2),
        ({"strategy": "ddp_spawn", "devices": 2}, 0),
        (
            {
                "strategy": {"_target_": "pytorch_lightning.strategies.DDPStrategy", "start_method": "spawn"},
                "devices": 2,
            },
            0,
        ),
        ({"strategy": "auto", "devices": 1}, 0),
        ({"strategy": "ddp", "devices": 1}, 1),
        ({"strategy": "ddp", "devices": "0,1,2", "accelerator": "gpu"}, 3),
    ],
)
def test_which_trainers_relaunch_the_script(trainer: dict, processes: int) -> None:
    from src.config.validate import _relaunched_processes

    assert _relaunched_processes(trainer) == processes
