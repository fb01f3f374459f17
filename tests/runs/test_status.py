"""Run folders say how the run ended (status.json), and each fold's results are logged when the fold ends."""

from __future__ import annotations

import errno
import json
import logging
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.config import REPO_ROOT
from src.errors import ConfigError
from src.pipeline import run
from src.runs import folder as run_folder
from src.runs.status import read_status
from tests.conftest import tiny_overrides
from tests.full_disk import small_disk

FAIL_IN_FOLD2 = "+callbacks.fail._target_=tests.failing_callback.FailInFold"


def test_a_completed_run_says_so_with_its_metric(tiny_cfg, tmp_path: Path) -> None:
    metric = run(tiny_cfg("validation.folds=[1]"))
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    status = read_status(folder)
    assert status["status"] == "completed" and status["value"] == pytest.approx(metric)
    assert status["optimized_metric"] == "val/slide_auroc/tumor_type" and status["pid"] > 0
    summary = json.loads((folder / "summary.json").read_text())
    assert "logit" in summary["interval"]


def test_a_crash_in_a_later_fold_keeps_earlier_folds_and_marks_the_run_failed(tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg(FAIL_IN_FOLD2, "validation.folds=[1,2,3]")
    with pytest.raises(RuntimeError, match="boom in fold2"):
        run(cfg)
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    status = read_status(folder)
    assert status["status"] == "failed" and status["error_type"] == "RuntimeError"
    assert "boom in fold2" in status["error"] and "failing_callback.py" in status["traceback"]
    log = pd.read_csv(cfg.results_log)
    assert list(log.fold) == ["fold1"] and log.run_id.iloc[0] == folder.name  # fold 1 was not lost
    assert not (folder / "summary.json").exists()


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial"))]


def test_a_full_disk_during_a_checkpoint_save_fails_the_run_and_leaves_no_half_checkpoint(
    tiny_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, one_torch_thread
) -> None:
    """Issue 20 item 5: a run folder on a 2 MB disk; a tiny model's checkpoint needs 4.5 MB."""
    with small_disk(tmp_path / "disk", 2 << 20, monkeypatch) as disk, caplog.at_level(logging.ERROR):
        folder = disk.path / "run"
        with pytest.raises(OSError) as raised:
            run(tiny_cfg(f"run_dir={folder}", "validation.folds=[1]", "+trainer.limit_train_batches=2"))
        assert raised.value.errno == errno.ENOSPC and "epoch1.ckpt" in str(raised.value)
        assert not list(folder.rglob("*.ckpt")), "a checkpoint that did not fit is under its final name"
        assert not _temp_files(folder) and not list(folder.rglob("*.lock"))
        status = read_status(folder)
        if disk.real:  # the failed save's space is free again: the status says why the run failed
            assert status["status"] == "failed" and status["error_type"] == "OSError"
            assert "No space left on device" in status["error"] and "epoch1.ckpt" in status["error"]
        else:  # a quota that deleting does not give back: even the status cannot be written
            assert status["status"] == "running" and "could not be set to 'failed'" in caplog.text


def test_a_status_that_cannot_be_written_does_not_hide_the_error_that_ended_the_run(
    tiny_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_when_failing(write):  # the disk fills up as the run fails: neither failed state can be written
        def wrapped(folder: Path, *args, **kwargs):
            if "failed" in args[:2]:  # write_status(folder, status, ...), write_attempt(folder, token, state, ...)
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(folder, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(run_folder, "write_status", full_when_failing(run_folder.write_status))
    monkeypatch.setattr(run_folder, "write_attempt", full_when_failing(run_folder.write_attempt))
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="boom in fold1"):
        run(tiny_cfg(FAIL_IN_FOLD2, "+callbacks.fail.fold=fold1", "validation.folds=[1]"))
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    assert read_status(folder)["status"] == "running"  # nothing could be written
    assert "status.json could not be set to 'failed'" in caplog.text and "boom in fold1" in caplog.text
    assert not _temp_files(folder)


def test_a_config_error_in_a_hydra_job_folder_leaves_status_failed(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 item 20 (i): Hydra makes the run folder before validate() refuses the config."""
    folder = tmp_path / "job"
    hydra = [f"hydra.run.dir={folder}", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    overrides = [*tiny_overrides(data_dir, tmp_path / "outputs"), *hydra, "epochs=[0]"]
    monkeypatch.setattr(sys, "argv", ["train.py", *overrides])
    with pytest.raises(SystemExit):  # Hydra prints the error and exits with status 1
        runpy.run_path(str(REPO_ROOT / "train.py"), run_name="__main__")
    status = read_status(folder)
    assert status["status"] == "failed" and status["error_type"] == "ConfigError"
    assert "epochs=[0] must list positive epochs" in status["error"]


def test_a_config_error_with_run_dir_makes_no_run_folder(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epochs"):
        run(tiny_cfg(f"run_dir={tmp_path / 'run'}", "epochs=[0]"))
    assert not (tmp_path / "run").exists()
