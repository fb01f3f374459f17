"""The Trainer API (Slideflow's shape) on a generated demo: compose → Dataset → labels → build_trainer → train.

One fit of a two-outcome (categorical + linear) multimodal model serves every test here: the returned
metrics, prediction columns and metrics per outcome (equal to scikit-learn's on the saved tables), the
clinical fit (training slides only), and self-describing checkpoints (input scaling included).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from sklearn.metrics import r2_score, roc_auc_score

from src.config import compose
from src.data.splits import KFold
from src.data.tiles import TileDataset
from src.losses.outcome_losses import loss_kinds
from src.project import dataset_from_config
from src.training.checkpoint import PARAMS_KEY, load_model, predict
from src.training.fold_trainer import build_trainer
from tests.conftest import tiny_overrides

OUTCOMES = ["tumor_type", "tumor_cellularity"]
LEVELS = ("tile", "slide", "patient")


@pytest.fixture(scope="module")
def fitted(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("trainer_api")
    hp = compose(
        [
            *tiny_overrides(data_dir, out),
            "experiment=demo_multi_outcome",
            "input_header=[age,stage]",
            "epochs=[1,2]",
            "+trainer.limit_train_batches=4",
        ]
    )
    dataset = dataset_from_config(hp)
    labels, unique = dataset.labels(OUTCOMES, loss_kinds(hp.loss, OUTCOMES))
    fold = KFold(k=3).split(dataset.annotations, ["tumor_type"], seed=0)[0]
    train_ds, val_ds = dataset.select_patients(fold.train_patients), dataset.select_patients(fold.val_patients)
    trainer = build_trainer(hp, outdir=out / "model", labels=labels)
    results = trainer.train(train_ds, val_ds)
    return {
        "hp": hp,
        "out": out / "model",
        "results": results,
        "trainer": trainer,
        "train_ds": train_ds,
        "val_ds": val_ds,
        "unique": unique,
    }


def test_results_keyed_by_epoch_with_every_metric(fitted: dict) -> None:
    epochs = fitted["results"]["epochs"]
    assert list(epochs) == ["epoch1", "epoch2"]
    for name, row in epochs.items():
        assert row["epoch"] == int(name.removeprefix("epoch"))
        expected = ["train/loss", "train/accuracy/tumor_type", "val/loss"]
        expected += [f"val/{level}_{m}/tumor_type" for level in LEVELS for m in ("auroc", "accuracy")]
        expected += [f"val/{level}_r2/tumor_cellularity" for level in LEVELS]
        for key in expected:
            assert np.isfinite(row[key]), (name, key)


def test_predictions_and_metrics_per_outcome_equal_sklearn(fitted: dict) -> None:
    row = fitted["results"]["epochs"]["epoch2"]
    classes = fitted["unique"]["tumor_type"]
    for level in LEVELS:
        table = pd.read_parquet(fitted["out"] / "predictions" / f"{level}_val_epoch2.parquet")
        columns = ["tumor_type-y_true", *[f"tumor_type-y_pred{i}" for i in range(len(classes))]]
        columns += ["tumor_cellularity-y_true", "tumor_cellularity-y_pred"]
        assert set(columns) <= set(table.columns), level
        auroc = roc_auc_score(table["tumor_type-y_true"], table["tumor_type-y_pred1"])
        assert row[f"val/{level}_auroc/tumor_type"] == pytest.approx(auroc, abs=1e-6)
        r2 = r2_score(table["tumor_cellularity-y_true"], table["tumor_cellularity-y_pred"])
        assert row[f"val/{level}_r2/tumor_cellularity"] == pytest.approx(r2, abs=1e-5)
    for name in ("roc_tumor_type_epoch2.png", "scatter_tumor_cellularity_epoch2.png"):
        assert (fitted["out"] / "plots" / name).stat().st_size > 0


def test_linear_predictions_are_in_the_column_units(fitted: dict) -> None:
    table = pd.read_parquet(fitted["out"] / "predictions" / "slide_val_epoch2.parquet")
    train = fitted["train_ds"].annotations.tumor_cellularity
    assert abs(table["tumor_cellularity-y_pred"].mean() - train.mean()) < 2 * train.std()


def test_clinical_fit_uses_training_slides_only(fitted: dict) -> None:
    params = json.loads((fitted["out"] / "params.json").read_text())
    manifest = pd.read_csv(fitted["out"] / "slide_manifest.csv")
    train = fitted["train_ds"].annotations
    assert sorted(manifest[manifest.dataset == "training"].slide) == sorted(train.slide)
    mean, sd = params["clinical_encoder"]["numeric"]["age"]
    assert mean == pytest.approx(train.age.mean()) and sd == pytest.approx(train.age.std(ddof=0))
    everything = pd.concat([train, fitted["val_ds"].annotations])
    assert mean != pytest.approx(everything.age.mean())  # so the check above can tell the two apart
    assert params["clinical_encoder"]["categories"]["stage"] == sorted(train.stage.astype(str).unique())


def test_checkpoint_rebuilds_the_model_alone(fitted: dict) -> None:
    model = load_model(fitted["out"] / "checkpoints" / "epoch2.ckpt")
    assert [o.name for o in model.outcomes] == OUTCOMES
    assert model.encoder.to_dict() == json.loads((fitted["out"] / "params.json").read_text())["clinical_encoder"]
    val = fitted["val_ds"]
    slides = val.slides()[:2]
    tiles = TileDataset(val.filter({"slide": slides}).tile_index(), np.zeros((2, 3), np.float32))
    picks = [0, 1, len(tiles) - 2, len(tiles) - 1]  # tiles of both slides
    batch = torch.stack([tiles[i]["image"] for i in picks])
    assert batch.dtype == torch.uint8  # tiles as read: the model scales them
    slide_of = [slides[int(tiles.index.slide_idx[i])] for i in picks]
    assert len(set(slide_of)) == 2
    rows = val.annotations.set_index("slide").loc[slide_of]
    outputs = predict(model, batch, rows.reset_index())
    net = fitted["trainer"].module.net.eval()
    with torch.no_grad():
        expected = net(batch, model.clinical(rows.reset_index()))
    np.testing.assert_allclose(outputs[0], torch.softmax(expected[0], 1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[1], expected[1].numpy(), rtol=1e-5, atol=1e-4)
    # ... and equal the module's own validation outputs at that epoch, as saved in the tile table
    table = pd.read_parquet(fitted["out"] / "predictions" / "tile_val_epoch2.parquet")
    keys = [(slide, *map(int, tiles.index.loc[i])) for slide, i in zip(slide_of, picks, strict=True)]
    saved = table.set_index(["slide", "loc_x", "loc_y"]).loc[keys]
    columns = [f"tumor_type-y_pred{i}" for i in range(len(model.outcomes[0].classes))]
    np.testing.assert_allclose(outputs[0], saved[columns].to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs[1][:, 0], saved["tumor_cellularity-y_pred"].to_numpy(), rtol=1e-5, atol=1e-4)


def test_input_scaling_is_saved_with_the_model(fitted: dict, tmp_path: Path, caplog) -> None:
    default = {"mean": [0.5] * 3, "std": [0.5] * 3}  # random init: tiles scaled to [-1, 1], as before
    assert fitted["trainer"].module.net.input_stats() == default
    params = json.loads((fitted["out"] / "params.json").read_text())
    assert params["input_stats"] == default
    checkpoint = torch.load(fitted["out"] / "checkpoints" / "epoch2.ckpt", weights_only=True)
    assert checkpoint[PARAMS_KEY]["input_stats"] == default
    assert checkpoint["state_dict"]["net.input_mean"].flatten().tolist() == default["mean"]

    # load_model takes the buffers from the file, not from the config it rebuilds the net with
    checkpoint["state_dict"]["net.input_mean"] = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    torch.save(checkpoint, tmp_path / "other_scaling.ckpt")
    assert load_model(tmp_path / "other_scaling.ckpt").net.input_stats()["mean"] == pytest.approx([0.1, 0.2, 0.3])

    # a checkpoint from before the model owned its scaling was trained on [-1, 1] tiles: loads with 0.5
    for key in ("net.input_mean", "net.input_std"):
        del checkpoint["state_dict"][key]
    del checkpoint[PARAMS_KEY]["input_stats"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with caplog.at_level(logging.WARNING, logger="src.training.checkpoint"):
        old = load_model(tmp_path / "old.ckpt")
    assert "no saved input scaling" in caplog.text
    assert old.net.input_stats() == default and old.params["input_stats"] == default


def test_our_checkpoint_as_backbone_weights(fitted: dict) -> None:
    path = fitted["out"] / "checkpoints" / "epoch2.ckpt"
    backbone = instantiate(compose([f"model.backbone.weights_path={path}"]).model.backbone)
    trained = fitted["trainer"].module.net.backbone.state_dict()
    assert set(backbone.state_dict()) == set(trained)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, trained[key], msg=key)


def test_labels_that_do_not_fit_the_loss_are_rejected(fitted: dict, tmp_path: Path) -> None:
    dataset = fitted["train_ds"]
    labels, _ = dataset.labels("tumor_type")  # categorical labels ...
    hp = compose(["loss=mse"])  # ... with a linear loss
    with pytest.raises(ValueError, match="'tumor_type' is labelled categorical but its loss is linear"):
        build_trainer(hp, tmp_path, labels)
