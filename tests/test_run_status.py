"""Run folders say how the run ended (status.json), and each fold's results are logged when the fold ends."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from src.pipeline import run
from src.run_status import read_status

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
