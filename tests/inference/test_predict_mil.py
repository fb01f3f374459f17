"""predict.py on MIL checkpoints: live tiles → the bags' encoder → the bag; attention heatmaps; evaluation."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from src.config import compose
from src.errors import UnsafeFileError
from src.features.bags import read_bag
from src.pipeline import run as train
from src.training.checkpoint import load_model, load_torch_file, predict_bag
from tests.conftest import tiny_overrides
from tests.inference.conftest import predict_cfg, run_predict, slide_files, validation_slides

MIL = ["dataset=features", "encoder=tiny_random", "model=attention_mil", "batch_size=4", "dataset.bag_size=32"]


@pytest.fixture(scope="module")
def mil_fold(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fold 1 of a tiny attention-MIL run (one epoch) on the small demo."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("mil_run")
    try:
        overrides = [*tiny_overrides(data_dir, out / "outputs"), *MIL, "validation.folds=[1]", f"run_dir={out / 'run'}"]
        train(compose(overrides))
    finally:
        torch.set_num_threads(threads)
    return out / "run" / "fold1"


def fold_annotations(mil_fold: Path, data_dir: Path, folder: Path) -> Path:
    """The demo annotations of the fold's validation slides only."""
    table = pd.read_csv(data_dir / "demo" / "annotations.csv")
    path = folder / "validation.csv"
    table[table.slide.isin(validation_slides(mil_fold))].to_csv(path, index=False)
    return path


def test_mil_predictions_equal_validation_and_attention_is_drawn(mil_fold: Path, data_dir: Path, tmp_path: Path):
    slides = validation_slides(mil_fold)
    annotations = fold_annotations(mil_fold, data_dir, tmp_path)
    failed = run_predict(
        mil_fold,
        tmp_path,
        f"slides={slide_files(data_dir, slides)}",
        f"annotations={annotations}",
        "outcomes=[tumor_type]",
    )
    assert failed == 0
    predicted = pd.read_csv(tmp_path / "slide_predictions.csv").set_index("slide").sort_index()
    validation = pd.read_parquet(mil_fold / "predictions" / "slide_val_epoch1.parquet").set_index("slide").sort_index()
    assert list(predicted.index) == list(validation.index) == sorted(slides)
    columns = [c for c in validation.columns if "-y_pred" in c]
    assert columns
    # the same tiles (shard JPEG round trip), the same encoder, the same float16 rounding, the whole bag
    np.testing.assert_allclose(predicted[columns].to_numpy(), validation[columns].to_numpy(), atol=1e-4)
    assert (predicted.n_tiles == validation.n_tiles).all()
    for slide in slides:
        folder = tmp_path / "slides" / slide
        tiles = pd.read_parquet(folder / "tile_predictions.parquet")
        assert len(tiles) == predicted.loc[slide, "n_tiles"]
        assert tiles.attention.sum() == pytest.approx(1.0, abs=1e-4)
        assert (tiles.attention >= 0).all()
        assert (folder / "attention.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert not any(name.startswith("val/tile_") for name in metrics)  # a MIL model predicts slides
    trained = pd.read_csv(mil_fold / "results_log.csv").iloc[-1]
    assert metrics["val/slide_auroc/tumor_type"] == pytest.approx(trained["val/slide_auroc/tumor_type"], abs=1e-6)


def test_mil_patient_rows_are_the_mean_of_their_slides(mil_fold: Path, data_dir: Path, tmp_path: Path) -> None:
    annotations = fold_annotations(mil_fold, data_dir, tmp_path)
    slides = validation_slides(mil_fold)
    assert run_predict(mil_fold, tmp_path, f"slides={slide_files(data_dir, slides)}", f"annotations={annotations}") == 0
    per_slide = pd.read_csv(tmp_path / "slide_predictions.csv")
    per_patient = pd.read_csv(tmp_path / "patient_predictions.csv").set_index("patient")
    column = "tumor_type-y_pred1"
    expected = per_slide.groupby("patient")[column].mean()
    np.testing.assert_allclose(per_patient.loc[expected.index, column], expected, atol=1e-6)


def test_another_encoder_weights_file_is_refused(mil_fold: Path, data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_weights.pt"
    torch.save({"w": torch.zeros(3)}, other)
    slides = slide_files(data_dir, validation_slides(mil_fold)[:1])
    with pytest.raises(ValueError, match="not the file the model was trained with"):
        run_predict(mil_fold, tmp_path / "out", f"slides={slides}", f"encoder_weights={other}")


def test_an_encoder_config_naming_other_code_is_refused(mil_fold: Path, data_dir: Path, tmp_path: Path) -> None:
    checkpoint = load_torch_file(mil_fold / "checkpoints" / "epoch1.ckpt")
    checkpoint["workbench_params"]["hp"]["dataset"]["bags"]["encoder"]["model"]["_target_"] = "os.system"
    doctored = tmp_path / "epoch1.ckpt"
    torch.save(checkpoint, doctored)
    slides = slide_files(data_dir, validation_slides(mil_fold)[:1])
    with pytest.raises(UnsafeFileError, match=r"os\.system"):
        run_predict(doctored, tmp_path / "out", f"slides={slides}")
    assert predict_cfg(doctored, tmp_path, f"slides={slides}").encoder_weights is None


def test_an_encoder_layer_naming_other_code_is_refused_before_anything_is_built(
    mil_fold: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 item 1: a shipped ``_target_`` whose ``kwargs.act_layer`` names any callable (timm calls it)."""
    checkpoint = load_torch_file(mil_fold / "checkpoints" / "epoch1.ckpt")
    checkpoint["workbench_params"]["hp"]["dataset"]["bags"]["encoder"]["model"] = {
        "_target_": "src.features.encoders.timm_encoder",
        "name": "vit_tiny_patch16_224",
        "pooling": "token",
        "kwargs": {"act_layer": "tempfile.mkdtemp"},
    }
    doctored = tmp_path / "epoch1.ckpt"
    torch.save(checkpoint, doctored)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads TMPDIR again
    calls = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: calls.append(a) or real(*a, **k))
    slides = slide_files(data_dir, validation_slides(mil_fold)[:1])
    with pytest.raises(UnsafeFileError) as refused:
        run_predict(doctored, tmp_path / "out", f"slides={slides}")
    assert "hp.dataset.bags.encoder.model.kwargs.act_layer='tempfile.mkdtemp' is not an allowed layer" in str(
        refused.value
    )
    assert calls == [] and list(tmpdir.iterdir()) == []  # nothing was imported, built or called


def test_predict_bag_on_a_bag_file_equals_validation(mil_fold: Path, data_dir: Path) -> None:
    model = load_model(mil_fold / "checkpoints" / "epoch1.ckpt")
    validation = pd.read_parquet(mil_fold / "predictions" / "slide_val_epoch1.parquet").set_index("slide")
    slide = validation_slides(mil_fold)[0]
    made = model.params["feature_bags"]  # the bags this model was trained on (other tests make other folders)
    (folder,) = [
        f.parent
        for f in (data_dir / "demo" / "features").glob("*/*/bags_config.json")
        if json.loads(f.read_text()) == made
    ]
    path = folder / f"{slide}.h5"
    bag = read_bag(path)
    (probs,), attention = predict_bag(model, torch.from_numpy(bag["features"]))
    np.testing.assert_allclose(
        probs[0], validation.loc[slide, ["tumor_type-y_pred0", "tumor_type-y_pred1"]].to_numpy(float), atol=1e-5
    )
    assert attention.shape == (len(bag["coords"]),)
    assert attention.sum() == pytest.approx(1.0, abs=1e-5)


def test_attention_heatmaps_are_titled_with_class_names(
    mil_fold: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = {}

    def record(thumbnail, coords, values, extent_px, downsample, path, title="", **kwargs) -> Path:
        titles[Path(path).parent.name] = title
        Path(path).write_bytes(b"")  # the file is renamed into place after
        return Path(path)

    monkeypatch.setattr("src.inference.mil.save_attention_heatmap", record)
    slide = validation_slides(mil_fold)[0]
    assert run_predict(mil_fold, tmp_path, f"slides={slide_files(data_dir, [slide])}") == 0
    (classes,) = [o["classes"] for o in json.loads((mil_fold / "params.json").read_text())["outcomes"]]
    row = pd.read_csv(tmp_path / "slide_predictions.csv").iloc[0]
    probabilities = ", ".join(f"P({name}) {row[f'tumor_type-y_pred{i}']:.3f}" for i, name in enumerate(classes))
    assert titles == {slide: f"{slide}: tumor_type: {probabilities}"}  # was "tumor_type-y_pred0 0.219, ..."


def test_a_slide_whose_live_features_are_not_finite_fails_naming_it(
    mil_fold: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder giving NaN (fp16 overflow, a damaged weights file) fails the slide, not a NaN prediction."""
    from src.inference.mil import MilPredictor

    features = MilPredictor.features

    def some_nan(self, images: torch.Tensor) -> torch.Tensor:
        out = features(self, images)
        out[0, 0] = float("nan")
        return out

    monkeypatch.setattr(MilPredictor, "features", some_nan)
    slides = validation_slides(mil_fold)[:1]
    assert run_predict(mil_fold, tmp_path, f"slides={slide_files(data_dir, slides)}") == 1
    report = pd.read_csv(tmp_path / "report.csv")
    assert report.status.tolist() == ["failed"]
    assert "non-finite features (NaN or inf)" in report.error.iloc[0] and f"slide '{slides[0]}'" in report.error.iloc[0]
    assert not (tmp_path / "slide_predictions.csv").exists() or pd.read_csv(tmp_path / "slide_predictions.csv").empty
