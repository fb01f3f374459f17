"""Sweeps from the command line on the tiny demo: a 2×2 grid, a shallow study, a NaN trial, kill + resume.

Every job is one fold, one epoch and two training batches; each command still pays Python + Hydra + torch
start-up (~10 s), so they are marked slow (20-60 s each; ``pytest -m slow tests/hpsearch``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from src.config import REPO_ROOT
from tests.conftest import tiny_overrides

ENV = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def _tiny(data_dir: Path, out: Path) -> list[str]:
    return [*tiny_overrides(data_dir, out), "validation.folds=[1]", "+trainer.limit_train_batches=2"]


def _train(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=ENV
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_grid_sweep_writes_grid_runs_rows_and_reruns_a_subset(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    sweep = tmp_path / "sweep"
    # the tiny settings first: their batch_size=16 is replaced by the sweep
    _train(
        "-m",
        *_tiny(data_dir, out),
        "optimizer.lr=1e-3,1e-4",
        "batch_size=8,16",
        "epochs=1,2",
        f"hydra.sweep.dir={sweep}",
    )

    grid = pd.read_csv(sweep / "grid.csv")
    assert set(grid.columns) == {"job", "optimizer.lr", "batch_size", "overrides"}
    assert sorted(zip(grid["optimizer.lr"], grid.batch_size)) == sorted(
        (lr, bs) for lr in (1e-3, 1e-4) for bs in (8, 16)
    )
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    history = pd.read_csv(sweep / "history.csv")
    assert len(history) == 4 and set(history.state) == {"complete"}
    assert (sweep / "best.yaml").exists()

    log = pd.read_csv(out / "results_log.csv")
    assert len(log) == 4 * 2  # epochs is each job's evaluate list, not a swept value
    assert set(log.epoch) == {1, 2} and log.run_id.nunique() == 4
    assert set(log.sweep_id) == {sweep.name} and set(log.sweep_job) == {0, 1, 2, 3}
    for _, row in log.iterrows():
        job = grid[grid.job == row.sweep_job].iloc[0]
        assert row["hp.optimizer.lr"] == job["optimizer.lr"] and row["hp.batch_size"] == job.batch_size
        assert row.sweep_overrides == job.overrides
    status = yaml.safe_load((sweep / "2" / "status.json").read_text())
    assert status["sweep"]["sweep_job"] == 2 and status["sweep"]["sweep_overrides"] == grid.overrides[2]

    again = tmp_path / "again"
    _train(
        "-m",
        f"hydra.sweeper.grid_file={sweep / 'grid.csv'}",
        "hydra.sweeper.jobs=[3]",
        f"hydra.sweep.dir={again}",
        "epochs=[1]",
        *_tiny(data_dir, out),
    )
    assert sorted(p.name for p in again.iterdir() if p.is_dir()) == ["3"]
    rerun = pd.read_csv(again / "grid.csv")
    assert rerun.overrides.tolist() == [grid.overrides[3]]  # the row's values replace the command line's


@pytest.mark.slow
def test_shallow_study_writes_history_and_a_best_yaml_that_reruns(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    _train("hparams_search=shallow", "hparams_search.n_trials=4", *_tiny(data_dir, out))
    sweep = out / "hpsearch" / "tumor_type-shallow"
    history = pd.read_csv(sweep / "history.csv")
    assert history.trial.tolist() == [0, 1, 2, 3]
    for column in ("model.dropout", "optimizer.weight_decay", "optimizer.lr", "model.hidden_layers"):
        assert column in history.columns
    assert "batch_size" not in history.columns  # fixed on the command line (batch_size=16): not searched
    assert {"objective", "mean", "sd", "fold1", "seconds", "run_folder", "state"} <= set(history.columns)
    for name in ("best.yaml", "optimization_results.yaml", "optimization_history.png", "study.db"):
        assert (sweep / name).exists(), name
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    complete = history[history.state == "complete"]
    assert results["best_value"] == pytest.approx(complete.objective.max())  # AUROC: maximised

    from src.hpsearch import load_search

    best, table = load_search(sweep)
    assert best["trial"] == results["best_trial"] and len(table) == 4
    rerun = _train("--config-dir", str(sweep), "--config-name", "best")
    assert "val/slide_auroc/tumor_type (mean over 1 fold(s)" in rerun.stdout
    config = yaml.safe_load(next((out / "runs").glob("*/config.yaml")).read_text())
    assert config["optimizer"]["lr"] == pytest.approx(best["params"]["optimizer.lr"])
    assert config["model"]["hidden_layers"] == best["params"]["model.hidden_layers"]


@pytest.mark.slow
def test_a_nan_trial_is_failed_with_its_reason_and_the_study_goes_on(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "nan"
    _train(
        "-m",
        "hydra/sweeper=study",
        "hydra/sweeper/sampler=grid",
        "validation=fixed",
        "validation.val_fraction=choice(0.05,0.5)",  # one validation patient: a single class, AUROC = NaN
        f"hydra.sweep.dir={sweep}",
        *tiny_overrides(data_dir, tmp_path / "outputs"),
        "+trainer.limit_train_batches=2",
    )
    history = pd.read_csv(sweep / "history.csv").set_index("validation.val_fraction")
    assert history.loc[0.05, "state"] == "failed" and "NaN in fold1" in history.loc[0.05, "reason"]
    assert history.loc[0.5, "state"] == "complete"


@pytest.mark.slow
def test_kill_and_resume_ends_with_n_trials_and_no_duplicate_folders(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    command = [sys.executable, "train.py", "hparams_search=shallow", "hparams_search.n_trials=3", *_tiny(data_dir, out)]
    sweep = out / "hpsearch" / "tumor_type-shallow"
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (sweep / "history.csv").exists():
        time.sleep(0.2)
    while time.time() < deadline and not (sweep / "1").exists():  # trial 1 started: kill it mid-trial
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(pd.read_csv(sweep / "history.csv")) == 1

    _train(*command[2:])
    history = pd.read_csv(sweep / "history.csv")
    finished = history[history.state.isin(["complete", "failed"])]
    assert len(finished) == 3
    assert history.trial.is_unique
    interrupted = history[history.state == "interrupted"]
    assert interrupted.trial.tolist() == [1]
    folders = sorted(int(p.name) for p in sweep.iterdir() if p.is_dir())
    assert folders == sorted(history.trial)  # one folder per trial number, none reused
    retried = history[history.trial == 2].iloc[0]  # the interrupted parameters were tried again
    assert retried["optimizer.lr"] == pytest.approx(interrupted.iloc[0]["optimizer.lr"])
