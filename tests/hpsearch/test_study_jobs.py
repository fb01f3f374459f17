"""Sweeps through a submitit launcher: every Optuna trial is one job (``hydra/launcher=local``: local processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.config import REPO_ROOT
from tests.conftest import tiny_overrides

ENV = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_study_trials_run_as_submitit_jobs(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    command = [
        sys.executable,
        "train.py",
        "hydra/launcher=local",
        "hparams_search=shallow",
        "hparams_search.n_trials=2",
        *tiny_overrides(data_dir, out),
        "validation.folds=[1]",
        "+trainer.limit_train_batches=2",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=ENV)
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = out / "hpsearch" / "tumor_type-shallow"
    jobs = sorted((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(jobs) == 2  # one submitit job per trial
    history = pd.read_csv(sweep / "history.csv")
    assert history.trial.tolist() == [0, 1] and set(history.state) == {"complete"}
    for trial in (0, 1):
        status = json.loads((sweep / str(trial) / "status.json").read_text())
        assert status["status"] == "completed" and status["pid"] != os.getpid()
        assert status["sweep"]["sweep_job"] == trial
