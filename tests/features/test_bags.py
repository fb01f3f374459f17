"""Feature bags: file contents against the shards, rerun skips, a changed encoder or weights file → new folder."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.config import REPO_ROOT
from src.data.sources import tile_source
from src.data.tiles import TileDataset
from src.extraction.shards import read_index
from src.features.bags import FeatureBags, read_bag
from src.features.encoders import Encoder, TinyRandomEncoder
from src.project import ensure_tiles, load_project


@pytest.fixture
def bag_project(tiny_cfg):
    cfg = tiny_cfg("experiment=demo_mil")
    dataset, _ = load_project(cfg)
    dataset = ensure_tiles(cfg, dataset)
    bags = instantiate(cfg.dataset.bags)
    return cfg, dataset, bags


def test_bag_files_hold_the_shards_tiles_features_and_attributes(bag_project) -> None:
    _, dataset, bags = bag_project
    folder = bags.folder(dataset)
    slide = dataset.slides()[0]
    index = read_index(dataset.shard_dir, slide)
    bag = read_bag(folder / f"{slide}.h5")
    assert bag["features"].shape == (index["num_tiles"], 64)
    with h5py.File(folder / f"{slide}.h5") as handle:
        assert handle["features"].dtype == np.float16
        assert handle["feats"].id == handle["features"].id  # STAMP's name, same data
    np.testing.assert_array_equal(bag["coords"], np.asarray(index["locations"]))
    np.testing.assert_allclose(bag["coords_um"], np.asarray(index["locations"]) * index["mpp"], rtol=1e-6)
    attrs = bag["attrs"]
    assert attrs["encoder"] == "tiny_random" and attrs["tile_px"] == dataset.tiles.tile_px
    assert attrs["weights_sha256"] == bags.weights_sha256 and len(attrs["weights_sha256"]) == 64
    assert json.loads(attrs["transform"])["mean"] == [0.5, 0.5, 0.5]
    assert attrs["mpp"] == index["mpp"] and attrs["num_tiles"] == index["num_tiles"]
    assert {"torch", "timm", "h5py"} <= set(json.loads(attrs["versions"]))
    # the features are the encoder's on the shard's decoded tiles (float16-rounded)
    tiles = TileDataset(dataset.tile_index(), np.zeros((len(dataset.slides()), 0), np.float32))
    n = index["num_tiles"]
    images = torch.stack([tiles.read_image(i) for i in range(n)])  # the first slide's tiles come first
    model, transform = bags.encoder.build(), bags.encoder.transform()
    expected = model(transform(images)).detach().numpy()
    np.testing.assert_allclose(bag["features"], expected, rtol=2e-3, atol=2e-3)
    assert json.loads((folder / "bags_config.json").read_text())["weights_sha256"] == bags.weights_sha256


def test_a_rerun_skips_complete_bags_and_redoes_a_partial_one(bag_project) -> None:
    _, dataset, bags = bag_project
    folder = bags.folder(dataset)
    files = sorted(folder.glob("*.h5"))
    assert len(files) == len(dataset.slides())
    before = {f.name: f.stat().st_mtime_ns for f in files}
    with h5py.File(files[0], "r+") as handle:  # a bag made from another shard (tile count disagrees)
        handle.attrs["num_tiles"] = -1
    before.pop(files[0].name)
    bags.ensure(dataset)
    after = {f.name: f.stat().st_mtime_ns for f in folder.glob("*.h5")}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert read_bag(files[0])["attrs"]["num_tiles"] > 0
    assert not [p for p in folder.iterdir() if p.suffix not in (".h5", ".json")]  # no temporary file left


def test_a_changed_weights_file_or_encoder_changes_the_folder(bag_project, tmp_path: Path) -> None:
    _, dataset, _ = bag_project
    weights = tmp_path / "tiny.pth"
    torch.save(TinyRandomEncoder(64, seed=0).state_dict(), weights)
    node = {"_target_": "src.features.encoders.tiny_random_encoder", "num_features": 64, "seed": 5}
    with_file = FeatureBags(Encoder("tiny_random", 64, node, weights_path=str(weights)), root=str(tmp_path / "f"))
    first = with_file.folder(dataset)
    torch.save(TinyRandomEncoder(64, seed=1).state_dict(), weights)  # same name, other weights
    changed = FeatureBags(Encoder("tiny_random", 64, node, weights_path=str(weights)), root=str(tmp_path / "f"))
    assert changed.folder(dataset) != first
    assert changed.weights_sha256 != with_file.weights_sha256
    reseeded = FeatureBags(Encoder("tiny_random", 64, {**node, "seed": 6}), root=str(tmp_path / "f"))
    assert reseeded.folder(dataset) != FeatureBags(Encoder("tiny_random", 64, node), root=str(tmp_path / "f")).folder(
        dataset
    )
    # the file's weights are the ones used (seed 5 in the node is overwritten by the file's seed-1 tensors)
    loaded = changed.encoder.build()
    torch.testing.assert_close(loaded.conv1.weight, TinyRandomEncoder(64, seed=1).conv1.weight)


def test_a_missing_weights_file_says_where_to_put_it(tiny_cfg) -> None:
    cfg = tiny_cfg("experiment=demo_mil", "encoder=uni")
    with pytest.raises(FileNotFoundError, match=r"encoder=uni: weights file .*weights/uni/pytorch_model.bin not found"):
        Encoder(**{k: v for k, v in cfg.encoder.items() if not k.startswith("_")}).check()
    with pytest.raises(Exception, match=r"Put the encoder's weights there .*huggingface.co/MahmoodLab/UNI"):
        ensure_tiles(cfg, load_project(cfg)[0])  # before any tile is extracted


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO_ROOT / "conf" / "encoder").glob("*.yaml")))
def test_every_encoder_preset_builds_with_its_feature_width(preset: str) -> None:
    """On the meta device (no memory, no weights): architecture kwargs, pooling and num_features agree."""
    cfg = OmegaConf.load(REPO_ROOT / "conf" / "encoder" / f"{preset}.yaml")
    with torch.device("meta"):
        model = instantiate(cfg.model)
        transform = Encoder(cfg.name, cfg.num_features, cfg.model, transform=cfg.transform).transform()
        size = cfg.transform.center_crop or 64
        out = model(transform(torch.zeros(2, 3, size, size, dtype=torch.uint8)))
    assert tuple(out.shape) == (2, cfg.num_features)


def test_bags_from_live_slides_have_the_shards_tiles_in_their_own_folder(tiny_cfg) -> None:
    """``dataset.tile_source`` = the wsi source: the same tiles, read from the slides, in a folder of their own."""
    live = ["experiment=demo_mil", "dataset.tile_source={_target_:src.data.sources.wsi.WsiSource}"]
    cfg = tiny_cfg(*live)
    dataset, _ = load_project(cfg)
    dataset = ensure_tiles(cfg, dataset)
    bags = instantiate(cfg.dataset.bags)
    source = tile_source(cfg.dataset)
    folder = bags.folder(dataset, source)
    assert folder != bags.folder(dataset)  # live pixels differ from the shards' by their JPEG error
    assert json.loads((folder / "bags_config.json").read_text())["pixels"] == "slide"
    shards = tile_source(tiny_cfg("experiment=demo_mil").dataset)
    shard_bags = bags.folder(dataset)
    bags.ensure(dataset, shards)
    for slide in dataset.slides()[:3]:
        bag, shard_bag = read_bag(folder / f"{slide}.h5"), read_bag(shard_bags / f"{slide}.h5")
        np.testing.assert_array_equal(bag["coords"], shard_bag["coords"])
        assert bag["attrs"]["patch_size_level0"] == shard_bag["attrs"]["patch_size_level0"] > 0
        # features of the slide's own pixels vs of their JPEG round trip: close, not equal
        assert np.corrcoef(bag["features"].ravel(), shard_bag["features"].ravel())[0, 1] > 0.99
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.h5")}
    bags.ensure(dataset, source)  # a rerun skips complete bags
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.h5")} == before
