"""predict.py on a tiny run's checkpoints: the same tiles and predictions as its evaluation, an ensemble of
its folds, evaluation mode with training's metric names and values, heatmaps and their value grid."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.config import REPO_ROOT
from src.data.tile_colour import FAR_SDS
from src.demo.svs import write_svs
from src.slides.reader import open_slide
from tests.inference.conftest import run_predict, slide_files, validation_slides

TOLERANCE = 1e-5  # the same pixels; float sums in another batch order and memory layout


def tile_tables(out: Path, slides: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(out / "slides" / s / "tile_predictions.parquet") for s in slides])


def test_predict_py_command_line(tiny_run: Path, data_dir: Path, tmp_path: Path) -> None:
    """The one predict.py process of the default suite (the others call what it calls, in this process)."""
    slide = validation_slides(tiny_run / "fold1")[0]
    out = tmp_path / "out"
    overrides = [f"model_path={tiny_run / 'fold1'}", f"slides={slide_files(data_dir, [slide])}", f"outdir={out}"]
    command = [sys.executable, "predict.py", *overrides, "heatmaps=false", "torch_threads=1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 slide(s): 1 predicted" in result.stdout, result.stdout[-3000:]
    assert pd.read_csv(out / "report.csv").status.tolist() == ["done"]
    assert len(pd.read_parquet(out / "slides" / slide / "tile_predictions.parquet"))


def test_predictions_equal_the_evaluation_of_the_same_tiles(tiny_run: Path, data_dir: Path, tmp_path: Path) -> None:
    fold = tiny_run / "fold1"
    slides = validation_slides(fold)
    annotations = data_dir / "demo" / "annotations.csv"
    failed = run_predict(
        fold / "checkpoints" / "epoch1.ckpt", tmp_path, f"slides={data_dir / 'demo' / 'slides'}",
        f"annotations={_subset(annotations, slides, tmp_path)}",
    )  # fmt: skip
    assert failed == 0
    evaluation = pd.read_parquet(fold / "predictions" / "tile_val_epoch1.parquet")
    ours = tile_tables(tmp_path, slides)
    columns = ["tumor_type-y_pred0", "tumor_type-y_pred1"]
    assert list(ours.columns) == ["slide", "patient", "loc_x", "loc_y", *columns]
    # the same tiles, in the shard's order
    assert ours[["slide", "loc_x", "loc_y"]].values.tolist() == evaluation[["slide", "loc_x", "loc_y"]].values.tolist()
    np.testing.assert_allclose(ours[columns], evaluation[columns], atol=TOLERANCE)
    for level in ("slide", "patient"):
        expected = pd.read_parquet(fold / "predictions" / f"{level}_val_epoch1.parquet")
        table = pd.read_csv(tmp_path / f"{level}_predictions.csv")
        assert table[level].tolist() == expected[level].tolist()
        assert table.n_tiles.tolist() == expected.n_tiles.tolist()
        np.testing.assert_allclose(table[columns], expected[columns], atol=TOLERANCE)
    # the heatmap: a PNG per outcome, and the raw grid holds every tile's value at its location
    slide = slides[0]
    png = tmp_path / "slides" / slide / "heatmap_tumor_type.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = np.load(tmp_path / "slides" / slide / "heatmap.npz")
    tiles = ours[ours.slide == slide]
    col = np.searchsorted(grid["loc_x"], tiles.loc_x)
    row = np.searchsorted(grid["loc_y"], tiles.loc_y)
    assert (grid["loc_x"][col] == tiles.loc_x).all() and (grid["loc_y"][row] == tiles.loc_y).all()
    plane = list(grid["columns"]).index("tumor_type-y_pred1")
    np.testing.assert_array_equal(grid["values"][plane, row, col], tiles["tumor_type-y_pred1"])
    assert np.isnan(grid["values"][plane]).sum() == grid["values"][plane].size - len(tiles)
    report = pd.read_csv(tmp_path / "report.csv")
    assert report.status.eq("done").all() and report.tiles.sum() == len(evaluation)
    assert not list(tmp_path.rglob("*.partial"))


def test_a_run_folder_is_the_mean_of_its_folds(tiny_run: Path, data_dir: Path, tmp_path: Path) -> None:
    slides = validation_slides(tiny_run / "fold1")[:2]
    args = (f"slides={slide_files(data_dir, slides)}", "heatmaps=false")
    assert run_predict(tiny_run, tmp_path / "ensemble", *args) == 0
    for fold in ("fold1", "fold2"):
        assert run_predict(tiny_run / fold, tmp_path / fold, *args) == 0
    columns = ["tumor_type-y_pred0", "tumor_type-y_pred1"]
    ensemble = tile_tables(tmp_path / "ensemble", slides)
    fold1, fold2 = (tile_tables(tmp_path / fold, slides) for fold in ("fold1", "fold2"))
    np.testing.assert_allclose(ensemble[columns], (fold1[columns] + fold2[columns]) / 2, atol=1e-6)
    assert not np.allclose(fold1[columns], fold2[columns])  # two different models
    slide_table = pd.read_csv(tmp_path / "ensemble" / "slide_predictions.csv")
    np.testing.assert_allclose(slide_table[columns], ensemble.groupby("slide")[columns].mean(), atol=1e-6)
    assert not (tmp_path / "ensemble" / "patient_predictions.csv").exists()  # no annotations: no patients


def test_evaluation_mode_gives_the_metrics_of_training(tiny_run: Path, data_dir: Path, tmp_path: Path) -> None:
    fold = tiny_run / "fold1"
    annotations = _subset(data_dir / "demo" / "annotations.csv", validation_slides(fold), tmp_path)
    assert run_predict(fold, tmp_path / "eval", f"slides={annotations}", f"slides_dir={data_dir / 'demo' / 'slides'}",
                       "outcomes=[tumor_type]", "heatmaps=false") == 0  # fmt: skip
    training = pd.read_csv(fold / "results_log.csv").iloc[-1]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    expected = {k: training[k] for k in training.index if k.startswith("val/") and k != "val/loss"}
    assert set(metrics) == set(expected)
    assert "val/slide_auroc/tumor_type" in metrics
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    assert (tmp_path / "eval" / "plots" / "roc_tumor_type_epoch1.png").is_file()
    (row,) = pd.read_csv(tmp_path / "eval" / "results_log.csv").to_dict("records")
    assert row["epoch"] == 1 and row["val/slide_auroc/tumor_type"] == pytest.approx(
        expected["val/slide_auroc/tumor_type"]
    )


def _subset(annotations: Path, slides: list[str], folder: Path) -> Path:
    """An annotations file with only ``slides``."""
    table = pd.read_csv(annotations)
    path = folder / "cohort.csv"
    table[table.slide.isin(slides)].to_csv(path, index=False)
    return path


def test_slides_given_with_a_cohort_file_are_the_only_slides_predicted(
    tiny_run: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fold = tiny_run / "fold1"
    slides = validation_slides(fold)[:2]
    cohort = data_dir / "demo" / "annotations.csv"  # every slide of the demo: far more rows than slides given
    assert len(pd.read_csv(cohort)) > len(slides)
    failed = run_predict(fold, tmp_path, f"slides={slide_files(data_dir, slides)}", f"annotations={cohort}",
                         "outcomes=[tumor_type]", "heatmaps=false")  # fmt: skip
    assert failed == 0  # the cohort's other rows are not failures
    assert f"{len(slides)} slide(s): {len(slides)} predicted" in capsys.readouterr().out
    report = pd.read_csv(tmp_path / "report.csv")
    assert sorted(report.slide) == sorted(slides) and report.status.eq("done").all()
    assert not report.colour_outlier.any()  # slides like the training slides are not flagged
    evaluated = pd.read_parquet(tmp_path / "slide_evaluation.parquet")
    assert sorted(evaluated.slide) == sorted(slides)  # evaluated on the slides given only


def test_a_dark_field_slide_is_flagged_far_from_the_training_colour(
    tiny_run: Path, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fold = tiny_run / "fold1"
    good = validation_slides(fold)[0]
    recorded = json.loads((fold / "params.json").read_text())["tile_colour"]
    training = pd.read_csv(fold / "slide_manifest.csv").query("dataset == 'training'")
    assert recorded["slides"] == len(training) and len(recorded["mean"]) == len(recorded["sd"]) == 3
    with open_slide(data_dir / "demo" / "slides" / f"{good}.svs") as reader:  # the demo slide, inverted
        image, mpp = reader.read_region((0, 0), 0, reader.dimensions), reader.mpp
    dark = tmp_path / "dark-field.svs"
    write_svs(dark, 255 - image, mpp=mpp)
    slides = f"slides=[{data_dir / 'demo' / 'slides' / f'{good}.svs'},{dark}]"
    with caplog.at_level(logging.WARNING):
        assert run_predict(fold, tmp_path / "out", slides, "heatmaps=false") == 0  # flagged, still predicted
    report = pd.read_csv(tmp_path / "out" / "report.csv").set_index("slide")
    assert report.loc["dark-field", "colour_outlier"] and not report.loc[good, "colour_outlier"]
    assert report.loc["dark-field", "colour_z"] > FAR_SDS > report.loc[good, "colour_z"]
    warnings = [r.getMessage() for r in caplog.records if "SDs from the training tiles'" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("Slide dark-field: its tiles' colour (mean RGB (")
