"""best.yaml reads the best trial's folder only inside the sweep folder (a study's attributes are read from a file)."""

from __future__ import annotations

from pathlib import Path

import yaml

from src.hpsearch.history import write_best


def trial_folder(folder: Path, overrides: list[str]) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": "tiny"}}}})
    )
    return folder


def test_best_yaml_reads_only_a_trial_folder_inside_the_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    best = {"trial": 3, "objective": 0.8, "mean": 0.8}
    inside = trial_folder(sweep / "3", ["optimizer.lr=0.001"])
    assert write_best(sweep, {**best, "job_dir": str(inside)}, "m", "mean", "trial") == sweep / "best.yaml"
    assert yaml.safe_load((sweep / "best.yaml").read_text())["optimizer"] == {"lr": 0.001}
    (sweep / "best.yaml").unlink()
    outside = trial_folder(tmp_path / "elsewhere", ["model.backbone._target_=builtins.open"])
    for job_dir in (outside, sweep / ".." / "elsewhere"):
        assert write_best(sweep, {**best, "job_dir": str(job_dir)}, "m", "mean", "trial") is None
    assert not (sweep / "best.yaml").exists()
