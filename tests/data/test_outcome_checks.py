"""A loss that does not fit its outcome column, or text in a numeric column, stops the run before any tile
is extracted, with a message naming the column and a sample value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate

from src.data.annotations import AnnotationError
from src.project import load_project


def _prepare(tiny_cfg, tmp_path: Path, *overrides: str, edit=None) -> None:
    """load_project on the demo (annotations optionally edited); asserts nothing was extracted."""
    cfg = tiny_cfg()
    annotations = instantiate(cfg.project.demo).ensure()
    if edit is not None:
        path = tmp_path / "annotations.csv"
        edit(pd.read_csv(annotations)).to_csv(path, index=False)
        overrides = (*overrides, f"project.annotations={path}")
    shards = tmp_path / "shards"
    try:
        load_project(tiny_cfg(f"project.shards_dir={shards}", *overrides))
    finally:
        assert not shards.exists(), "tiles were extracted before the bad input was caught"


def test_linear_loss_on_a_text_column(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(
        AnnotationError, match=r"'tumor_type' must be numeric for a linear loss.*'(adenocarcinoma|squamous)'"
    ):
        _prepare(tiny_cfg, tmp_path, "loss=mse", "outcomes=[tumor_type]")


def test_cross_entropy_on_a_continuous_column(tiny_cfg, tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"'tumor_cellularity' looks continuous .*e.g. slide '.+': \d+\.\d"):
        _prepare(tiny_cfg, tmp_path, "outcomes=[tumor_cellularity]")


def test_text_in_a_numeric_outcome_column(tiny_cfg, tmp_path: Path) -> None:
    def text(table: pd.DataFrame) -> pd.DataFrame:
        table["tumor_cellularity"] = table["tumor_cellularity"].astype(object)
        table.loc[3, "tumor_cellularity"] = "high"
        return table

    with pytest.raises(AnnotationError, match=r"'tumor_cellularity' must be numeric.*slide '.+' has 'high'"):
        _prepare(tiny_cfg, tmp_path, "loss=mse", "outcomes=[tumor_cellularity]", edit=text)
