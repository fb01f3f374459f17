"""Every conf/experiment/demo_*.yaml runs end to end from the command line (tiny settings, one fold).

All of them run in one `python train.py -m experiment=a,b,...` command, so the suite pays the start-up of
one process rather than one per experiment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from src.config import CONFIG_DIR, REPO_ROOT
from src.pipeline import run
from tests.conftest import tiny_overrides

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("demo_*.yaml"))


@pytest.mark.slow  # ~45 s: a train.py process fitting each experiment; each one composes in tests/test_configs.py
def test_every_experiment_runs_from_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    assert {"demo_linear", "demo_multi_outcome", "demo_multimodal", "demo_clinical_only"} <= set(EXPERIMENTS)
    out = tmp_path / "outputs"
    command = [sys.executable, "train.py", "-m", f"experiment={','.join(EXPERIMENTS)}"]
    command += [*tiny_overrides(data_dir, out), "validation.folds=[1]", "+trainer.limit_train_batches=3"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "WANDB_MODE": "offline"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = re.findall(r"^(\S+) \(mean over 1 fold\(s\), epoch 1\): (\S+)$", result.stdout, re.MULTILINE)
    assert len(printed) == len(EXPERIMENTS), result.stdout[-3000:]
    assert all(value != "nan" for _, value in printed), printed

    jobs = {}
    for job in (out / "multirun").glob("*/*/"):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        (experiment,) = [o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")]
        jobs[experiment] = job / "fold1"
    assert sorted(jobs) == EXPERIMENTS
    slides = {name: pd.read_parquet(fold / "predictions" / "slide_val_epoch1.parquet") for name, fold in jobs.items()}

    assert {"tumor_cellularity-y_true", "tumor_cellularity-y_pred"} <= set(slides["demo_linear"].columns)
    assert (jobs["demo_linear"] / "plots" / "scatter_tumor_cellularity_epoch1.png").exists()
    assert "val/slide_r2/tumor_cellularity" in dict(printed)  # demo_linear's optimized_metric

    assert {"tumor_type-y_pred1", "tumor_cellularity-y_pred"} <= set(slides["demo_multi_outcome"].columns)
    log = pd.read_csv(jobs["demo_multi_outcome"] / "results_log.csv")
    assert {"val/slide_auroc/tumor_type", "val/slide_r2/tumor_cellularity"} <= set(log.columns)

    for name in ("demo_multimodal", "demo_clinical_only"):
        params = json.loads((jobs[name] / "params.json").read_text())
        assert params["input_header"] == ["age", "stage"]
        assert set(params["clinical_encoder"]["numeric"]) == {"age"}
        assert params["hp"]["model"]["drop_images"] == (name == "demo_clinical_only")


def test_clinical_only_reads_no_tile(tiny_cfg, tmp_path: Path) -> None:
    shards = tmp_path / "no_shards"  # nothing may be extracted here, nor read from anywhere
    run(
        tiny_cfg(
            "experiment=demo_clinical_only",
            "validation.folds=[1]",
            f"project.shards_dir={shards}",
            f"run_dir={tmp_path / 'run'}",
        )
    )
    assert not shards.exists()
    fold = tmp_path / "run" / "fold1"
    tiles = pd.read_parquet(fold / "predictions" / "tile_val_epoch1.parquet")
    slides = pd.read_parquet(fold / "predictions" / "slide_val_epoch1.parquet")
    assert len(tiles) == len(slides) and (slides.n_tiles == 1).all()  # one sample per slide
