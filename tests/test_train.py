"""End to end: train.py on a small generated slide project, and bad input caught before extraction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.config import REPO_ROOT
from src.config.validate import validate
from src.data.annotations import AnnotationError
from src.pipeline import run
from src.project import load_project
from tests.conftest import tiny_overrides


def test_tiny_fit_writes_every_output(tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg("epochs=[1,2]", f"run_dir={tmp_path / 'run'}", "+trainer.limit_train_batches=3")
    metric = run(cfg)
    run_dir = tmp_path / "run"
    assert isinstance(metric, float)
    for name in ("config.yaml", "splits.json", "summary.json"):
        assert (run_dir / name).exists(), name
    splits = json.loads((run_dir / "splits.json").read_text())
    assert len(splits["folds"]) == 3
    for fold in splits["folds"]:
        fold_dir = run_dir / fold["name"]
        assert not set(fold["train_patients"]) & set(fold["val_patients"])
        for name in ("params.json", "slide_manifest.csv", "results_log.csv"):
            assert (fold_dir / name).exists(), (fold["name"], name)
        for epoch in (1, 2):
            assert (fold_dir / "checkpoints" / f"epoch{epoch}.ckpt").exists()
            for level in ("tile", "slide", "patient"):
                table = pd.read_parquet(fold_dir / "predictions" / f"{level}_val_epoch{epoch}.parquet")
                assert len(table) and "tumor_type-y_pred1" in table
            assert (fold_dir / "plots" / f"roc_tumor_type_epoch{epoch}.png").exists()
        log = pd.read_csv(fold_dir / "results_log.csv")
        assert list(log.epoch) == [1, 2]
        manifest = pd.read_csv(fold_dir / "slide_manifest.csv")
        val_patients = set(manifest[manifest.dataset == "validation"].patient)
        assert val_patients == set(fold["val_patients"])
    project_log = pd.read_csv(cfg.results_log)
    assert len(project_log) == 3 * 2  # folds × evaluated epochs
    for column in ("val/slide_auroc/tumor_type", "val/tile_accuracy/tumor_type", "val/loss", "train/loss"):
        assert pd.api.types.is_numeric_dtype(project_log[column]), column
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"]["val/slide_auroc/tumor_type"]["n"] == 3


def test_train_py_command_line(data_dir: Path, tmp_path: Path) -> None:
    overrides = [
        *tiny_overrides(data_dir, tmp_path / "outputs"),
        "validation.folds=[1]",
        "logger=default",
        "+trainer.limit_train_batches=2",
    ]
    result = subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/slide_auroc/tumor_type (mean over 1 fold(s)" in result.stdout
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "fold1" / "wandb").exists()


def _broken_project(tiny_cfg, tmp_path: Path, edit, *overrides: str) -> None:
    """Run validate + load_project on a copy of the demo annotations changed by ``edit`` (and ``overrides``)."""
    cfg = tiny_cfg()
    from hydra.utils import instantiate

    annotations = pd.read_csv(instantiate(cfg.project.demo).ensure())
    edited = edit(annotations)
    path = tmp_path / "annotations.csv"
    edited.to_csv(path, index=False)
    shards = tmp_path / "shards"
    cfg = tiny_cfg(f"project.annotations={path}", f"project.shards_dir={shards}", *overrides)
    try:
        validate(cfg)  # as run(): the config first, then the annotations
        load_project(cfg)
    finally:
        assert not shards.exists(), "tiles were extracted before the bad input was caught"


def test_missing_column(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="patient"):
        _broken_project(tiny_cfg, tmp_path, lambda t: t.drop(columns=["patient"]))


def test_unknown_outcome(tiny_cfg, tmp_path: Path) -> None:
    cfg_edit = lambda t: t.rename(columns={"tumor_type": "histology"})  # noqa: E731
    with pytest.raises(ValueError, match="tumor_type"):
        _broken_project(tiny_cfg, tmp_path, cfg_edit)


def test_missing_slide_file(tiny_cfg, tmp_path: Path) -> None:
    def add_ghost(t: pd.DataFrame) -> pd.DataFrame:
        ghost = t.iloc[[0]].assign(slide="ghost_slide_0001", patient="ghost_patient")
        return pd.concat([t, ghost])

    with pytest.raises(AnnotationError, match="ghost_slide_0001"):
        _broken_project(tiny_cfg, tmp_path, add_ghost)


def test_bad_mpp_column_value_names_slide_and_column(tiny_cfg, tmp_path: Path) -> None:
    def add_mpps(t: pd.DataFrame) -> pd.DataFrame:
        values = ["0.5"] * len(t)
        values[1], values[2] = "", "0.5 um"  # blank = the file's own; text is an error
        return t.assign(scan_mpp=values)

    with pytest.raises(AnnotationError, match=r"slide '[^']+' has scan_mpp='0\.5 um'.*positive numbers"):
        _broken_project(tiny_cfg, tmp_path, add_mpps, "project.mpp_column=scan_mpp")
    with pytest.raises(AnnotationError, match=r"project.mpp_column='mpp' is not an annotation column"):
        _broken_project(tiny_cfg, tmp_path, lambda t: t, "project.mpp_column=mpp")


def test_conflicting_patient_labels(tiny_cfg, tmp_path: Path) -> None:
    def conflict(t: pd.DataFrame) -> pd.DataFrame:
        patient = t.patient[t.patient.duplicated()].iloc[0]
        rows = t.index[t.patient == patient]
        t.loc[rows[0], "tumor_type"] = "adenocarcinoma"
        t.loc[rows[1], "tumor_type"] = "squamous"
        return t

    with pytest.raises(AnnotationError, match="different 'tumor_type'"):
        _broken_project(tiny_cfg, tmp_path, conflict)
