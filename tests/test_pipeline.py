"""run(): fold sizes, splits.json and summary.json count only the patients that still have slides."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

import src.pipeline as pipeline
from src.errors import UnsafeFileError
from tests.test_project import small_project


class StubTrainer:
    """Stands in for FoldTrainer: records what each fold trains and validates on, returns one result row."""

    folds: ClassVar[dict[str, tuple[set, set]]] = {}

    def __init__(self, cfg, out, labels, name: str, row_info: dict) -> None:
        self.fold = row_info["fold"]
        self.row_info = row_info

    def train(self, train, val, resume_from=None) -> dict:
        StubTrainer.folds[self.fold] = (set(train.patients().values()), set(val.patients().values()))
        return {"epochs": {1: {"epoch": 1, "val/slide_auroc/tumor_type": 0.5, **self.row_info}}}


def test_a_patient_without_tiles_is_in_no_fold_count(
    tiny_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=6, blank_patient="lonely")
    cfg = tiny_cfg(
        f"project.annotations={annotations}",
        f"project.slides_dir={slides_dir}",
        f"project.shards_dir={tmp_path / 'shards'}",
        "project.demo=null",
        f"run_dir={tmp_path / 'run'}",
    )
    monkeypatch.setattr(pipeline, "build_trainer", StubTrainer)
    StubTrainer.folds = {}
    with caplog.at_level(logging.INFO):
        pipeline.run(cfg)
    messages = [r.getMessage() for r in caplog.records]
    assert any("lost all their slides" in m and "'lonely'" in m for m in messages)
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert splits["dropped_patients"] == summary["dropped_patients"] == ["lonely"]
    for fold in splits["folds"]:
        assert "lonely" not in fold["train_patients"] + fold["val_patients"]
        train, val = StubTrainer.folds[fold["name"]]
        assert (set(fold["train_patients"]), set(fold["val_patients"])) == (train, val)
        assert summary["patients"][fold["name"]] == {"train": len(train), "val": len(val)}
        assert f"{fold['name']}: {len(train)} training / {len(val)} validation patients" in messages
    assert sum(len(f["val_patients"]) for f in splits["folds"]) == 6  # every patient with tiles, once


def test_on_slide_error_skip_trains_without_the_slide_and_names_it(
    tiny_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=6, cut_patient="cut")
    overrides = [
        f"project.annotations={annotations}",
        f"project.slides_dir={slides_dir}",
        f"project.shards_dir={tmp_path / 'shards'}",
        "project.demo=null",
        "dataset.extraction_workers=1",
    ]
    monkeypatch.setattr(pipeline, "build_trainer", StubTrainer)
    with pytest.raises(RuntimeError, match=r"cut_slide: .*truncated.*on_slide_error=skip"):  # stop: as before
        pipeline.run(tiny_cfg(*overrides, f"run_dir={tmp_path / 'stopped'}"))
    assert json.loads((tmp_path / "stopped" / "status.json").read_text())["status"] == "failed"
    StubTrainer.folds = {}
    pipeline.run(tiny_cfg(*overrides, f"run_dir={tmp_path / 'run'}", "on_slide_error=skip"))
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert list(splits["failed_slides"]) == ["cut_slide"] and "truncated" in splits["failed_slides"]["cut_slide"]
    assert summary["failed_slides"] == splits["failed_slides"]
    assert splits["dropped_patients"] == summary["dropped_patients"] == ["cut"]
    for fold in splits["folds"]:
        assert "cut_slide" not in fold["train_slides"] + fold["val_slides"]
        assert "cut" not in set().union(*StubTrainer.folds[fold["name"]])
    assert "1 slide(s) left out, their tiles could not be made: cut_slide" in capsys.readouterr().out


@pytest.mark.parametrize("escape", ["absolute", "parent"])
def test_a_fold_name_from_a_splits_file_writes_nothing_outside_the_run_folder(
    tiny_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, escape: str
) -> None:
    """Issue 20 item 3: ``folds[0].name`` of a ``validation.splits`` file is an absolute path or climbs out."""
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=4)
    table = pd.read_csv(annotations).astype(str)
    val = table.groupby("tumor_type").patient.first().tolist()  # one of each class per side
    train = sorted(set(table.patient) - set(val))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "checkpoints").mkdir(parents=True)
    (elsewhere / "checkpoints" / "last.ckpt").write_text("someone else's checkpoint")
    name = str(elsewhere) if escape == "absolute" else "../elsewhere"
    splits = tmp_path / "splits.json"
    folds = [
        {"name": name, "train_patients": train, "val_patients": val},
        {"name": "fold2", "train_patients": val, "val_patients": train},
    ]
    splits.write_text(json.dumps({"strategy": "k_fold", "folds": folds}))
    cfg = tiny_cfg(
        f"project.annotations={annotations}",
        f"project.slides_dir={slides_dir}",
        f"project.shards_dir={tmp_path / 'shards'}",
        "project.demo=null",
        f"validation.splits={splits}",
        f"run_dir={tmp_path / 'run'}",
    )
    monkeypatch.setattr(pipeline, "build_trainer", StubTrainer)

    def outside_the_run() -> dict[Path, float]:
        return {p: p.stat().st_mtime for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0] != "run"}

    before = outside_the_run()
    with pytest.raises(UnsafeFileError, match=r"folds\[0\]\.name=.* is not a plain name"):
        pipeline.run(cfg)
    assert outside_the_run() == before  # nothing written, and last.ckpt there is still there
    assert (elsewhere / "checkpoints" / "last.ckpt").read_text() == "someone else's checkpoint"
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"
