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


def _blank_outcomes(table: pd.DataFrame) -> pd.DataFrame:
    """Blank 'tumor_type' and 'os_event' for the slides of two patients (one cell of spaces only)."""
    patients = table.patient.unique()[:2]
    table["tumor_type"] = table["tumor_type"].astype(object)
    table.loc[table.patient == patients[0], ["tumor_type", "os_event"]] = None
    table.loc[table.patient == patients[1], "tumor_type"] = "   "
    return table


@pytest.mark.parametrize(
    ("overrides", "column"),
    [
        (("outcomes=[tumor_type]",), "tumor_type"),
        (("loss=cox", "outcomes=[os_time]", "event_header=os_event"), "os_event"),
    ],
)
def test_a_blank_outcome_is_an_error_with_outcome_blank_error(tiny_cfg, tmp_path: Path, overrides, column) -> None:
    with pytest.raises(AnnotationError, match=rf"annotations.csv: \d+ slide\(s\) with a blank '{column}': \['P\d+-1'"):
        _prepare(tiny_cfg, tmp_path, *overrides, "outcome_blank=error", edit=_blank_outcomes)


def test_slides_with_a_blank_outcome_are_dropped_and_logged(tiny_cfg, tmp_path: Path, caplog) -> None:
    cfg = tiny_cfg()
    table = _blank_outcomes(pd.read_csv(instantiate(cfg.project.demo).ensure()))
    blank = table.slide[table.tumor_type.isna() | (table.tumor_type == "   ")].tolist()
    path = tmp_path / "annotations.csv"
    table.to_csv(path, index=False)
    with caplog.at_level("WARNING"):
        dataset, labels = load_project(tiny_cfg(f"project.annotations={path}", f"project.shards_dir={tmp_path}/s"))
    assert f"Dropped {len(blank)} slide(s) with a blank 'tumor_type': {blank}" in caplog.text
    assert not set(blank) & set(dataset.slides()) and sorted(labels) == sorted(dataset.slides())


def test_spaces_around_an_outcome_value_do_not_make_a_third_class(tiny_cfg, tmp_path: Path) -> None:
    def spaces(table: pd.DataFrame) -> pd.DataFrame:
        adeno = table.patient[table.tumor_type == "adenocarcinoma"].iloc[0]
        table.loc[table.patient == adeno, "tumor_type"] = "adenocarcinoma "
        return table

    cfg = tiny_cfg()
    path = tmp_path / "annotations.csv"
    spaces(pd.read_csv(instantiate(cfg.project.demo).ensure())).to_csv(path, index=False)
    _, labels = load_project(tiny_cfg(f"project.annotations={path}", f"project.shards_dir={tmp_path}/s"))
    assert labels.outcomes[0].classes == ["adenocarcinoma", "squamous"]
