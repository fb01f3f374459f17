"""What the real Trainer feeds the model: balanced training proportions, the validation_balance loss,
augmentation in training only, and the stain normalizer (fitted on training tiles, saved with the model, run on
the device)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from src.data.augment import recompress
from src.data.normalizers import Reinhard, from_fit
from src.data.tiles import TileDataset, TileIndex
from src.data.transforms import WorkerTransform
from src.samplers.balance import tile_weights
from src.training.checkpoint import PARAMS_KEY
from tests.training.recorder import recorder_of

# 5 patients, 7 slides: squamous P001 (2 slides), P002, P003, P005 (2 slides); adenocarcinoma P004 (1 slide).
IMBALANCED = {"squamous": 4, "adenocarcinoma": 1}


def sampled(fit, strategy: str):
    trainer, _, _, train_ds, _ = fit(
        "epochs=[3]", "batch_size=32", f"training_balance={strategy}", "augment=none", train=IMBALANCED, val={}
    )
    recorder = recorder_of(trainer)
    slides = np.asarray(train_ds.slides())[np.asarray(recorder.slides)]
    table = train_ds.annotations.set_index("slide")
    index = TileIndex.from_shards(train_ds.shard_dir, train_ds.slides())
    return slides, table, pd.Series(index.tiles_per_slide, index=train_ds.slides())


def test_category_balance_equalises_the_classes(fit) -> None:
    slides, table, tiles = sampled(fit, "category")  # (slide/patient balance: tests/data/test_balance.py)
    adeno_tiles = tiles[table.tumor_type == "adenocarcinoma"].sum() / tiles.sum()
    assert adeno_tiles < 0.25  # the subset is imbalanced ...
    share = (table.loc[slides].tumor_type == "adenocarcinoma").mean()
    assert share == pytest.approx(0.5, abs=0.08)  # ... the sampled stream is not


def test_no_balance_follows_the_tile_counts(fit) -> None:
    slides, table, tiles = sampled(fit, "none")
    share = (table.loc[slides].tumor_type == "adenocarcinoma").mean()
    adeno_tiles = tiles[table.tumor_type == "adenocarcinoma"].sum() / tiles.sum()
    assert share == pytest.approx(adeno_tiles, abs=0.03)


def tile_losses(trainer) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-tile cross-entropy from the saved epoch-1 tile predictions (rows in validation tile order)."""
    table = pd.read_parquet(trainer.outdir / "predictions" / "tile_val_epoch1.parquet")
    probs = table[["tumor_type-y_pred0", "tumor_type-y_pred1"]].to_numpy()
    truth = table["tumor_type-y_true"].to_numpy()
    return -np.log(probs[np.arange(len(table)), truth]), table


def test_validation_balance_weights_the_validation_loss(fit) -> None:
    trainer, results, *_, val_ds = fit(
        "epochs=[1]", "validation_balance=category", val={"squamous": 2, "adenocarcinoma": 1}
    )
    losses, table = tile_losses(trainer)
    slides = list(dict.fromkeys(table.slide))  # validation slide order
    slide_idx = table.slide.map({s: i for i, s in enumerate(slides)}).to_numpy()
    annotations = val_ds.annotations.set_index("slide").loc[slides]
    categories = (annotations.tumor_type == "squamous").astype(int).to_numpy()
    weights = tile_weights("category", slide_idx, list(annotations.patient), categories)
    assert weights[table["tumor_type-y_true"].to_numpy() == 0].sum() == pytest.approx(0.5)
    logged = results["epochs"]["epoch1"]["val/loss"]
    assert logged == pytest.approx(float((weights * losses).sum()), rel=1e-4)
    assert logged != pytest.approx(losses.mean(), rel=1e-3)  # the weighting really changed it


def test_no_validation_balance_is_the_plain_tile_mean(decay_fit) -> None:
    trainer, results, *_ = decay_fit
    losses, _ = tile_losses(trainer)
    assert results["epochs"]["epoch1"]["val/loss"] == pytest.approx(losses.mean(), rel=1e-4)


def test_normalizer_and_augmentation_in_the_tile_stream(fit) -> None:
    trainer, _, cfg, train_ds, _ = fit(
        "epochs=[1]",
        "normalizer=reinhard",
        "normalizer.fit_tiles=16",
        "augment.codes=xyrjbdn",
        "augment.blur_p=1.0",
        "augment.jpeg_p=1.0",
    )
    lightning = trainer.module.trainer
    normalizer = trainer.normalizer
    recorder = recorder_of(trainer)
    net = trainer.module.net

    # workers return uint8 tiles: only the CPU-only JPEG step ('j') runs there
    val_data = lightning.val_dataloaders.dataset
    train_data = lightning.train_dataloader.dataset
    assert val_data.transform is None and isinstance(train_data.transform, WorkerTransform)
    assert train_data[0]["image"].dtype == torch.uint8
    # the model sees them normalized (+ augmented in training) and scaled, on the device (on_after_batch_transfer)
    assert recorder.val_images and recorder.train_images
    assert {image.dtype for _, image in recorder.val_images + recorder.train_images} == {torch.float32}
    for tile, image in recorder.val_images:  # validation: normalized, never augmented
        expected = net.scale(normalizer.normalize(val_data.read_image(tile)[None]))[0]
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
    for tile, image in recorder.train_images:  # training: a perturbed target ('n'), augmented: never the plain tile
        plain = net.scale(normalizer.normalize(train_data.read_image(tile)[None]))[0]
        assert not torch.equal(image, plain)

    # the fit comes from training tiles only, and is saved in params.json and every checkpoint
    index = TileIndex.from_shards(train_ds.shard_dir, train_ds.slides())
    raw = TileDataset(index, np.zeros((len(index.slides), 1)))
    expected = Reinhard(fit_tiles=16).fit_source(raw.read_image, len(raw), int(cfg.seed)).get_fit()
    params = json.loads((trainer.outdir / "params.json").read_text())
    assert params["norm_fit"]["params"] == expected["params"]
    for key in ("means", "stds"):
        assert params["norm_fit"][key] == pytest.approx(expected[key], rel=1e-6)
    checkpoint = torch.load(trainer.outdir / "checkpoints" / "epoch1.ckpt", weights_only=True)
    assert checkpoint[PARAMS_KEY]["norm_fit"] == params["norm_fit"]
    rebuilt = from_fit(checkpoint[PARAMS_KEY]["norm_fit"])
    tile, image = recorder.val_images[0]
    assert torch.equal(net.scale(rebuilt.normalize(val_data.read_image(tile)[None]))[0], image)


def test_jpeg_on_the_device_in_the_tile_stream(fit) -> None:
    """``augment.jpeg_on=device`` on a CPU fit: the workers return the stored tiles, the batch is recompressed."""
    trainer, *_ = fit("epochs=[1]", "augment.codes=j", "augment.jpeg_p=1.0", "augment.jpeg_on=device")
    train_data = trainer.module.trainer.train_dataloader.dataset
    assert train_data.transform is None  # no JPEG in the workers
    recorder, net = recorder_of(trainer), trainer.module.net
    for tile, image in recorder.train_images[:4]:  # each one recompressed once, at a quality in 50-100
        stored = train_data.read_image(tile)
        candidates = [net.scale(recompress(stored, q)[None])[0] for q in range(50, 101)]
        assert any(torch.equal(image, c) for c in candidates)
