"""Resume: an interrupted run continues to the result of an uninterrupted one; what may not resume is refused."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.config import REPO_ROOT, compose
from src.errors import ConfigError
from src.pipeline import run
from src.runs.resume import config_differences
from src.runs.status import read_status, write_status
from tests.conftest import tiny_overrides
from tests.training.memory_logger import MemoryLogger

INTERRUPT = "+callbacks.stop._target_=tests.failing_callback.InterruptOnce"
FEW_BATCHES = ["+trainer.limit_train_batches=2"]  # still a whole sampler draw per epoch; less to train
MEMORY = "+logger.memory={_target_: tests.training.memory_logger.MemoryLogger, name: null, group: null, id: null}"


def files(folder: Path) -> dict[str, int]:
    """Relative path → modification time (ns) of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread) -> SimpleNamespace:
    """An uninterrupted run (folds 1 and 2), and the same run interrupted in fold 2 after its first epoch, resumed.

    (Two folds of three keep this fast; the kill -9 test below runs all three, in a real process.)
    """
    base = tmp_path_factory.mktemp("resume")
    overrides = [*tiny_overrides(data_dir, base / "outputs"), "epochs=[1,2]", "validation.folds=[1,2]", *FEW_BATCHES]
    whole = compose([*overrides, f"run_dir={base / 'whole'}"])
    run(whole)
    MemoryLogger.made.clear()
    cut = compose([*overrides, f"run_dir={base / 'cut'}", INTERRUPT, f"+callbacks.stop.flag={base / 'flag'}", MEMORY])
    with pytest.raises(RuntimeError, match="interrupted in fold2"):
        run(cut)
    interrupted = files(base / "cut")
    first_loggers = {m.name: m.run_id for m in MemoryLogger.made}
    MemoryLogger.made.clear()
    run(cut)  # the same config and run_dir: resumes
    resumed_loggers = {m.name: m.run_id for m in MemoryLogger.made}
    return SimpleNamespace(
        base=base,
        overrides=overrides,
        whole=base / "whole",
        cut=base / "cut",
        log=Path(whole.results_log),
        interrupted=interrupted,
        loggers=(first_loggers, resumed_loggers),
    )


def test_an_interrupted_run_resumes_to_the_uninterrupted_summary(runs: SimpleNamespace) -> None:
    whole = json.loads((runs.whole / "summary.json").read_text())
    cut = json.loads((runs.cut / "summary.json").read_text())
    assert cut["metrics"] == whole["metrics"] and cut["by_epoch"] == whole["by_epoch"]
    log = pd.read_csv(runs.log)
    rows = log[log.run_id == "cut"]
    assert sorted(zip(rows.fold, rows.epoch, strict=True)) == [(f"fold{k}", e) for k in (1, 2) for e in (1, 2)]
    assert rows.notna().sum().min() == len(rows)  # no half rows
    for fold in ("fold1", "fold2"):
        assert list(pd.read_csv(runs.cut / fold / "results_log.csv").epoch) == [1, 2], fold
    before = pd.read_csv(runs.cut / "fold2" / "logs" / "metrics.before_resume1.csv")  # CSV logs of epoch 1 kept
    assert list(before.epoch.dropna().unique()) == [0]


def test_kept_folds_and_saved_epochs_are_not_redone(runs: SimpleNamespace) -> None:
    before, after = runs.interrupted, files(runs.cut)
    assert "fold2/checkpoints/last.ckpt" in before and "fold2/fold_status.json" not in before
    fold1 = [f for f in before if f.startswith("fold1/")]
    assert "fold1/fold_status.json" in fold1 and all(after[f] == before[f] for f in fold1)  # fold 1 not retrained
    for name in ("checkpoints/epoch1.ckpt", "predictions/slide_val_epoch1.parquet", "plots/roc_tumor_type_epoch1.png"):
        assert after[f"fold2/{name}"] == before[f"fold2/{name}"], name  # epoch 1 of fold 2 not re-written
    assert "fold2/checkpoints/epoch2.ckpt" not in before and "fold2/checkpoints/epoch2.ckpt" in after
    assert not [f for f in after if f.endswith("last.ckpt")]  # dropped once each fold completed
    status = read_status(runs.cut)
    assert status["status"] == "completed" and len(status["resumed"]) == 1 and "error" not in status
    assert status["pid"] == os.getpid()


def test_a_resumed_fold_logs_to_the_same_logger_run(runs: SimpleNamespace) -> None:
    first, resumed = runs.loggers
    assert set(first) == {"tumor_type-fold1", "tumor_type-fold2"}
    assert set(resumed) == {"tumor_type-fold2"}  # fold 1 was kept: no logger
    assert resumed["tumor_type-fold2"] == first["tumor_type-fold2"] != first["tumor_type-fold1"]


def test_a_corrupt_last_ckpt_resumes_from_the_newest_epoch_checkpoint_and_says_so(
    runs: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20 item 7: fold 1 interrupted in epoch 2, its last.ckpt then cut short (a full disk, an old copy)."""
    folder, flag = runs.base / "corrupt", runs.base / "flag_corrupt"
    interrupt = [INTERRUPT, f"+callbacks.stop.flag={flag}", "+callbacks.stop.fold=fold1"]
    cfg = compose([*runs.overrides, "validation.folds=[1]", f"run_dir={folder}", *interrupt])
    with pytest.raises(RuntimeError, match="interrupted in fold1"):
        run(cfg)
    last = folder / "fold1" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:4096])
    with caplog.at_level(logging.WARNING, logger="src.training.resume_point"):
        run(cfg)  # the same command: resumes
    assert f"{last} cannot be resumed from" in caplog.text and "fold1 continues from epoch1.ckpt" in caplog.text
    assert read_status(folder)["status"] == "completed"
    resumed = pd.read_csv(folder / "fold1" / "results_log.csv")
    whole = pd.read_csv(runs.whole / "fold1" / "results_log.csv")
    metrics = [c for c in whole.columns if c.startswith(("train/", "val/"))]
    pd.testing.assert_frame_equal(resumed[["epoch", *metrics]], whole[["epoch", *metrics]])  # as if never cut
    assert (last.parent / "last.ckpt.unusable").exists() and not last.exists()


def test_a_completed_run_resumed_does_nothing_and_says_so(runs: SimpleNamespace, capsys) -> None:
    before, log_rows = files(runs.whole), len(pd.read_csv(runs.log))
    value = run(compose([*runs.overrides, f"resume={runs.whole}"]))
    out = capsys.readouterr().out
    assert f"Run {runs.whole} already completed" in out and "nothing to do" in out
    assert value == pytest.approx(read_status(runs.whole)["value"])
    assert files(runs.whole) == before and len(pd.read_csv(runs.log)) == log_rows


def test_a_differing_config_is_refused_with_the_keys_listed(tiny_cfg, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(tiny_cfg(f"run_dir={folder}"), resolve=True))
    with pytest.raises(ConfigError) as error:
        run(tiny_cfg(f"run_dir={folder}", "epochs=[1,3]", "optimizer.lr=0.01", "batch_size=16"))
    message = str(error.value)
    listed = [line.strip().split(":")[0] for line in message.splitlines()[1:-1]]
    assert listed == ["epochs", "optimizer.lr"] and "2 key(s)" in message  # not run_dir, not an equal batch_size
    before = tiny_cfg().optimizer.lr  # the model preset's own rate (conf/lr/)
    assert "epochs: [1] → [1, 3]" in message and f"optimizer.lr: {before} → 0.01" in message
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]  # refused before anything ran


def test_resume_of_a_folder_without_a_run_or_of_a_live_run_is_refused(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"resume=.*empty: no run there \(no config.yaml"):
        run(tiny_cfg(f"resume={tmp_path / 'empty'}"))
    folder = tmp_path / "live"
    cfg = tiny_cfg(f"run_dir={folder}")
    folder.mkdir()
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    write_status(folder, "running", pid=os.getppid())  # a process that is alive on this host
    with pytest.raises(ConfigError, match=rf"still running \(pid {os.getppid()}"):
        run(cfg)


def test_config_differences_name_nested_and_missing_keys() -> None:
    saved = {"epochs": [1, 3], "model": {"width": 8, "depth": 2}, "run_dir": "a", "resume": None}
    now = {"epochs": [1, 3], "model": {"width": 16}, "loss": {"kind": "cox"}, "run_dir": "b", "resume": "a"}
    assert config_differences(saved, now) == [
        "loss.kind: '<absent>' → 'cox'",
        "model.depth: 2 → '<absent>'",
        "model.width: 8 → 16",
    ]


def test_a_run_from_before_the_problem_keys_resumes(tiny_cfg) -> None:
    """A config saved before torch_threads, on_slide_error and validation.small_classes existed still resumes."""
    now = OmegaConf.to_container(tiny_cfg("on_slide_error=skip", "validation.small_classes=error"), resolve=True)
    saved = json.loads(json.dumps(now))
    for key in ("torch_threads", "on_slide_error"):
        del saved[key]
    del saved["validation"]["small_classes"]
    saved["validation"]["k"] = now["validation"]["k"] + 1  # a real change is still named
    assert config_differences(saved, now) == [f"validation.k: {saved['validation']['k']} → {now['validation']['k']}"]


def _rows_per_fold_and_epoch(log: Path, run_id: str) -> list[tuple[str, int]]:
    table = pd.read_csv(log)
    table = table[table.run_id == run_id]
    return sorted(zip(table.fold, table.epoch, strict=True))


@pytest.mark.slow
def test_kill_9_in_fold_2_then_the_same_command_gives_the_uninterrupted_summary(data_dir: Path, tmp_path: Path) -> None:
    """Acceptance: ``python train.py`` killed with SIGKILL in fold 2 of 3, run again, equals an uninterrupted run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    overrides = [*tiny_overrides(data_dir, tmp_path / "outputs"), "epochs=[1,3]", "trainer.deterministic=true"]

    def command(folder: Path) -> list[str]:
        return [sys.executable, "train.py", *overrides, f"run_dir={folder}"]

    def train(folder: Path) -> None:
        done = subprocess.run(command(folder), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]

    train(tmp_path / "whole")
    cut = tmp_path / "cut"
    last = cut / "fold2" / "checkpoints" / "last.ckpt"
    with open(tmp_path / "cut.log", "w") as output:
        process = subprocess.Popen(command(cut), cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 1800  # a loaded 2-core machine: poll, never sleep a fixed time
        while not last.exists():
            assert process.poll() is None, (tmp_path / "cut.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "fold 2 saved no last.ckpt in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=120)
    assert (cut / "fold1" / "fold_status.json").exists() and not (cut / "fold2" / "fold_status.json").exists()
    assert read_status(cut)["status"] == "running"  # SIGKILL: nothing could be written
    train(cut)  # the same command again: resumes
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    resumed = json.loads((cut / "summary.json").read_text())
    assert resumed["metrics"] == whole["metrics"] and resumed["by_epoch"] == whole["by_epoch"]
    log = tmp_path / "outputs" / "results_log.csv"
    expected = [(f"fold{k}", e) for k in (1, 2, 3) for e in (1, 3)]
    assert _rows_per_fold_and_epoch(log, "cut") == expected == _rows_per_fold_and_epoch(log, "whole")
    assert len(read_status(cut)["resumed"]) == 1 and read_status(cut)["status"] == "completed"
