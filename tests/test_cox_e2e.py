"""End to end: the demo_cox experiment (tiny) with a clinical input, and survival errors caught early."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from src.data.annotations import AnnotationError
from src.pipeline import run
from tests.test_train import _broken_project


def test_demo_cox_end_to_end(tiny_cfg, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """What ``python train.py experiment=demo_cox input_header=[age]`` does (train.py only composes and calls run)."""
    metric = run(tiny_cfg("experiment=demo_cox", "input_header=[age]", "validation.folds=[1]"))
    assert 0.0 <= metric <= 1.0
    assert "val/slide_c_index/os_time (mean over 1 fold(s), epoch 1)" in capsys.readouterr().out
    (run_folder,) = (tmp_path / "outputs" / "runs").iterdir()
    fold = run_folder / "fold1"
    assert (fold / "plots" / "km_os_time_epoch1.png").stat().st_size > 10_000
    for level in ("tile", "slide", "patient"):
        table = pd.read_parquet(fold / "predictions" / f"{level}_val_epoch1.parquet")
        assert {"os_time-time", "os_time-event", "os_time-risk"} <= set(table.columns)
        assert table["os_time-risk"].notna().all()
    log = pd.read_csv(fold / "results_log.csv")
    for level in ("tile", "slide", "patient"):
        assert pd.api.types.is_numeric_dtype(log[f"val/{level}_c_index/os_time"])
    params = (fold / "params.json").read_text()
    assert '"input_header": [\n    "age"\n  ]' in params and '"event": "os_event"' in params


def test_all_censored_stops_before_extraction(tiny_cfg, tmp_path: Path) -> None:
    cfg = ("experiment=demo_cox",)
    with pytest.raises(AnnotationError, match="no observed event"):
        _broken_project(lambda *o: tiny_cfg(*cfg, *o), tmp_path, lambda t: t.assign(os_event=0))


def test_event_as_clinical_input_is_rejected(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="event goes in event_header"):
        _broken_project(
            lambda *o: tiny_cfg("experiment=demo_cox", "input_header=[os_event]", *o), tmp_path, lambda t: t
        )


def test_cox_with_other_outcomes_is_rejected_early(tiny_cfg, tmp_path: Path) -> None:
    make = lambda *o: tiny_cfg("experiment=demo_cox", "outcomes=[os_time,tumor_type]", *o)  # noqa: E731
    with pytest.raises(ValueError, match="cox outcome cannot be combined"):
        _broken_project(make, tmp_path, lambda t: t)
