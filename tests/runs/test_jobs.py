"""Jobs of one run: fold jobs sharing a run folder merge into the summary of one cross-validated run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.config import REPO_ROOT, compose
from src.errors import ConfigError
from src.evaluation.results_log import epoch_summary, summarize
from src.outcomes import metric_bounds, outcome_from_dict
from src.pipeline import run
from src.runs.folds import incomplete_folds
from src.runs.jobs import busy_jobs, joined, left, live_jobs, overlap
from src.runs.naming import RUN_LOCK
from src.runs.resume import check_resume
from src.runs.status import read_status, write_status
from src.runs.summarize import find_run, main
from tests.conftest import tiny_overrides

FEW_BATCHES = ["+trainer.limit_train_batches=2"]
HERE = socket.gethostname()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_live_jobs_overlap_and_leaving() -> None:
    dead = _dead_pid()
    status = {
        "status": "running",
        "jobs": [
            {"pid": os.getppid(), "host": HERE, "folds": [1]},
            {"pid": dead, "host": HERE, "folds": [2]},
            {"pid": 1, "host": "another-node", "folds": [3]},  # cannot be checked: counts until it leaves
        ],
    }
    assert [j["folds"] for j in live_jobs(status)] == [[1], [3]]
    assert overlap(None, [2]) and overlap([1, 2], [2]) and not overlap([1], [2])
    assert [j["folds"] for j in busy_jobs(status, [1])] == [[1]]
    assert busy_jobs(status, [2]) == [] and busy_jobs(status, [3]) == []  # fold 3 runs on another host
    assert [j["folds"] for j in busy_jobs(status, None)] == [[1]]
    mine = joined(status, [2])
    assert [j["folds"] for j in mine] == [[1], [3], [2]] and mine[-1]["pid"] == os.getpid()
    assert [j["folds"] for j in left({"jobs": mine})] == [[1], [3]]
    # a status written before jobs were listed: its pid trains every fold while it is running
    assert busy_jobs({"status": "running", "pid": os.getppid(), "host": HERE}, [2])
    assert not busy_jobs({"status": "completed", "pid": os.getppid(), "host": HERE}, [2])


def test_a_job_on_another_node_holds_the_run_up_until_its_folds_completed(tmp_path: Path) -> None:
    """A job killed on another node cannot be checked; once its fold is trained again it no longer counts."""
    folds = [{"name": f"fold{k}", "train_patients": [], "val_patients": []} for k in (1, 2, 3)]
    (tmp_path / "splits.json").write_text(json.dumps({"folds": folds}))
    status = {"jobs": [{"pid": 1, "host": "node-a", "folds": [3]}, {"pid": 2, "host": "node-b", "folds": None}]}
    assert len(live_jobs(status, tmp_path)) == 2
    (tmp_path / "fold3").mkdir()
    (tmp_path / "fold3" / "fold_status.json").write_text('{"status": "completed", "rows": []}')
    assert [j["host"] for j in live_jobs(status, tmp_path)] == ["node-b"]  # fold 3 is done
    assert incomplete_folds(tmp_path) == []
    for name in ("fold1", "fold2"):
        (tmp_path / name).mkdir()
    assert incomplete_folds(tmp_path) == ["fold1", "fold2"]
    for name in ("fold1", "fold2"):
        (tmp_path / name / "fold_status.json").write_text('{"status": "completed", "rows": []}')
    assert live_jobs(status, tmp_path) == [] and left(status, tmp_path) == []


def test_a_job_for_other_folds_joins_a_live_run_one_for_the_same_fold_is_refused(tiny_cfg, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = tiny_cfg(f"run_dir={folder}", "validation.folds=[1]")
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_status(folder, "running", jobs=[{"pid": os.getppid(), "host": HERE, "folds": [1]}])
    with pytest.raises(ConfigError, match=rf"still running \(pid {os.getppid()} .*validation.folds=\[1\]"):
        check_resume(cfg, folder)
    other = check_resume(tiny_cfg(f"run_dir={folder}", "validation.folds=[2]"), folder)  # validation.folds is free
    assert other is not None and other.folds == [2] and not other.complete


@pytest.fixture(scope="module")
def fold_jobs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread) -> SimpleNamespace:
    """One 2-fold run, and the same two folds as two jobs (one fold each) sharing one run_dir."""
    base = tmp_path_factory.mktemp("fold_jobs")
    overrides = [*tiny_overrides(data_dir, base / "outputs"), "validation.k=2", *FEW_BATCHES]
    run(compose([*overrides, f"run_dir={base / 'whole'}"]))
    shared = base / "runs" / "cv2"
    statuses = []
    for fold in (1, 2):
        run(compose([*overrides, f"run_dir={shared}", f"validation.folds=[{fold}]"]))
        statuses.append(read_status(shared))
    return SimpleNamespace(base=base, whole=base / "whole", shared=shared, statuses=statuses, overrides=overrides)


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _assert_metrics_equal(got: dict, expected: dict) -> None:
    """Equal up to the round-off of results_log.csv (the expected side is read back from it)."""
    assert got.keys() == expected.keys()
    for metric, values in expected.items():
        for key, value in values.items():
            assert got[metric][key] == pytest.approx(value, rel=1e-9, nan_ok=True), (metric, key)


def test_fold_jobs_of_one_run_give_the_summary_of_one_run(fold_jobs: SimpleNamespace) -> None:
    whole, shared = _summary(fold_jobs.whole), _summary(fold_jobs.shared)
    assert shared["folds"] == whole["folds"] == ["fold1", "fold2"]
    assert shared["metrics"] == whole["metrics"] and shared["by_epoch"] == whole["by_epoch"]
    assert shared["patients"] == whole["patients"] and shared["run_id"] == "cv2"
    # after the first job: the summary so far; after the second: both folds, completed, no job left
    assert [s["status"] for s in fold_jobs.statuses] == ["completed", "completed"]
    assert fold_jobs.statuses[-1]["jobs"] == [] and not (fold_jobs.shared / RUN_LOCK).exists()
    assert incomplete_folds(fold_jobs.shared) == []
    log = pd.read_csv(fold_jobs.base / "outputs" / "results_log.csv")
    assert sorted(log[log.run_id == "cv2"].fold) == ["fold1", "fold2"]


def test_the_merged_summary_is_the_pipeline_summary_of_the_fold_rows(fold_jobs: SimpleNamespace) -> None:
    log = pd.read_csv(fold_jobs.base / "outputs" / "results_log.csv")
    rows = log[log.run_id == "cv2"].to_dict("records")
    params = json.loads((fold_jobs.shared / "fold1" / "params.json").read_text())
    bounds = metric_bounds([outcome_from_dict(o) for o in params["outcomes"]])
    expected = summarize(rows, bounds=bounds)
    shared = _summary(fold_jobs.shared)
    _assert_metrics_equal(shared["metrics"], epoch_summary(expected, 1))
    assert len(shared["by_epoch"]) == len(expected)


def test_summarize_command_rewrites_the_summary_of_a_run_folder_or_name(fold_jobs: SimpleNamespace, capsys) -> None:
    before = _summary(fold_jobs.shared)
    (fold_jobs.shared / "summary.json").unlink()
    assert main([str(fold_jobs.shared)]) == 0
    assert _summary(fold_jobs.shared) == before
    out = capsys.readouterr().out
    assert "2 completed fold(s) (fold1, fold2)" in out and "val/slide_auroc/tumor_type" in out
    assert find_run("cv2", fold_jobs.base / "runs") == fold_jobs.shared
    with pytest.raises(FileNotFoundError, match="no run folder 'nope'"):
        find_run("nope", fold_jobs.base / "runs")
    assert main(["nope", "--runs", str(fold_jobs.base / "runs")]) == 2
    assert "error: no run folder 'nope'" in capsys.readouterr().err


def test_a_job_for_a_completed_fold_does_nothing_one_for_a_missing_fold_trains(
    fold_jobs: SimpleNamespace, capsys
) -> None:
    run(compose([*fold_jobs.overrides, f"run_dir={fold_jobs.shared}", "validation.folds=[2]"]))
    assert "already completed" in capsys.readouterr().out
    # a copy of the run with fold 2 undone: the summary of fold 1 alone, then fold 2 again gives both
    partial = fold_jobs.base / "runs" / "partial"
    subprocess.run(["cp", "-r", str(fold_jobs.shared), str(partial)], check=True)
    (partial / "fold2" / "fold_status.json").unlink()
    assert main([str(partial)]) == 0
    assert _summary(partial)["folds"] == ["fold1"]
    assert incomplete_folds(partial) == ["fold2"]
    write_status(partial, "failed", error="killed")
    run(compose([*fold_jobs.overrides, f"run_dir={partial}", "validation.folds=[2]"]))
    assert _summary(partial)["folds"] == ["fold1", "fold2"] and read_status(partial)["status"] == "completed"


@pytest.mark.slow
def test_three_fold_jobs_through_submitit_local_merge_into_one_summary(data_dir: Path, tmp_path: Path) -> None:
    """``-m hydra/launcher=local validation.folds=[1],[2],[3]``: three concurrent local jobs, one run folder."""
    out, shared, sweep = tmp_path / "outputs", tmp_path / "outputs" / "runs" / "cv3", tmp_path / "sweep"
    command = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=local",
        *tiny_overrides(data_dir, out),
        *FEW_BATCHES,
        "validation.folds=[1],[2],[3]",
        f"run_dir={shared}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 3  # three submitit jobs
    summary, status = _summary(shared), read_status(shared)
    assert summary["folds"] == ["fold1", "fold2", "fold3"]
    assert status["status"] == "completed" and status["jobs"] == []
    log = pd.read_csv(out / "results_log.csv")
    rows = log[log.run_id == "cv3"]
    assert sorted(rows.fold) == ["fold1", "fold2", "fold3"]
    cfg = compose([*tiny_overrides(data_dir, out)])
    params = json.loads((shared / "fold1" / "params.json").read_text())
    assert list(cfg.outcomes) == [o["name"] for o in params["outcomes"]]
    expected = summarize(
        rows.to_dict("records"), bounds=metric_bounds([outcome_from_dict(o) for o in params["outcomes"]])
    )
    _assert_metrics_equal(summary["metrics"], epoch_summary(expected, 1))
