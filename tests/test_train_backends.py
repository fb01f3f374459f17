"""End to end: ``train.py dataset.backend=openslide`` extracts with OpenSlide and trains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from src.extraction.report import REPORT_NAME
from src.pipeline import run


def test_train_with_openslide_backend(tiny_cfg, tmp_path: Path, one_torch_thread) -> None:
    shards = tmp_path / "shards"  # fresh shards: the session's demo shards may have been read by tiffslide
    run_dir = tmp_path / "run"
    cfg = tiny_cfg(
        "dataset.backend=openslide",
        f"project.shards_dir={shards}",
        f"run_dir={run_dir}",
        "validation.folds=[1]",
        "+trainer.limit_train_batches=2",
    )
    metric = run(cfg)
    assert isinstance(metric, float)
    assert (run_dir / "summary.json").exists()
    (folder,) = [p for p in shards.iterdir() if p.is_dir()]
    report = pd.read_csv(folder / REPORT_NAME, keep_default_na=False)
    slides = pd.read_csv(cfg.project.annotations, dtype=str)["slide"]
    assert sorted(report["slide"]) == sorted(slides)
    assert set(report["status"]) == {"done"} and set(report["backend"]) == {"openslide"}
    for slide in slides:
        index = json.loads((folder / f"{slide}.index.json").read_text())
        assert index["backend"] == "openslide" and index["num_tiles"] > 0
