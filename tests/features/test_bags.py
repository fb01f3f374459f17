"""Feature bags: contents against the shards, rerun skips, a changed encoder or weights → new folder, a full disk."""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
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
from tests.conftest import tiny_overrides
from tests.full_disk import FullDisk


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


def test_a_full_disk_ends_with_an_error_naming_the_bag_and_keeps_the_complete_bags(
    bag_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for two bags and half a third: the third fails cleanly, the two stay, a rerun adds the rest."""
    _, dataset, bags = bag_project
    made = bags.folder(dataset)  # the fixture's bags, for reference
    dataset = dataset.filter({"slide": dataset.slides()[:4]})
    slides = dataset.slides()
    sizes = [(made / f"{slide}.h5").stat().st_size for slide in slides[:3]]
    free = (made / "bags_config.json").stat().st_size + sizes[0] + sizes[1] + sizes[2] // 2
    own = FeatureBags(bags.encoder, root=str(tmp_path / "features"))
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", FullDisk(tmp_path / "features", free).open)
        with pytest.raises(OSError) as raised:
            own.ensure(dataset)
    folder = own.folder(dataset)
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC
    assert f"slide '{slides[2]}'" in message and str(folder / f"{slides[2]}.h5") in message
    assert "No space left on device" in message and "the rerun extracts only the missing ones" in message
    # no partial file under the final name, no temporary file: only the complete bags
    assert {p.name for p in folder.iterdir()} == {"bags_config.json", f"{slides[0]}.h5", f"{slides[1]}.h5"}
    for slide in slides[:2]:
        np.testing.assert_array_equal(_features(folder, slide), _features(made, slide))
    kept = {slide: (folder / f"{slide}.h5").stat().st_mtime_ns for slide in slides[:2]}
    own.ensure(dataset)  # space freed: the missing bags are added, the complete ones kept
    assert {slide: (folder / f"{slide}.h5").stat().st_mtime_ns for slide in slides[:2]} == kept
    for slide in slides:
        np.testing.assert_array_equal(_features(folder, slide), _features(made, slide))


def _features(folder: Path, slide: str) -> np.ndarray:
    return read_bag(folder / f"{slide}.h5")["features"]


REAL_DISK_SCRIPT = """
import os, sys
from src.config import compose
from src.project import ensure_tiles, load_project
from tests.conftest import tiny_overrides
from tests.full_disk import FullDisk
cfg = compose(sys.argv[2:])
dataset, _ = load_project(cfg)
try:
    ensure_tiles(cfg, dataset)
except OSError as err:
    print("ERROR:", err)
    print("FILES:", sorted(os.listdir(sys.argv[1])))
    sys.exit(3)
"""


@pytest.mark.slow
def test_a_real_full_disk_does_not_crash_the_process(bag_project, data_dir: Path, tmp_path: Path) -> None:
    """A 40 KiB tmpfs as the bags' root (in a user and mount namespace): an error, not HDF5's segfault (rc 139)."""
    _, dataset, bags = bag_project
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to mount a small tmpfs")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(mount)])
    if probe.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs in a user namespace")
    folder = FeatureBags(bags.encoder, root=str(mount)).folder(dataset)
    overrides = [*tiny_overrides(data_dir, tmp_path / "outputs"), "experiment=demo_mil", f"dataset.bags.root={mount}"]
    command = [sys.executable, "-c", REAL_DISK_SCRIPT, str(folder), *overrides]
    shell = f"mount -t tmpfs -o size=40k tmpfs {mount} && exec {shlex.join(command)}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 3, done.stderr[-3000:]  # our error, not a crash
    assert "No space left on device" in done.stdout and "Could not write the feature bag of slide '" in done.stdout
    files = done.stdout.split("FILES:")[1]
    assert ".partial" not in files and "bags_config.json" in files


def test_the_weights_hash_cache_is_plain_data_checked_before_use(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.pth"
    torch.save(TinyRandomEncoder(64, seed=0).state_dict(), weights)
    node = {"_target_": "src.features.encoders.tiny_random_encoder", "num_features": 64, "seed": 0}
    encoder = Encoder("tiny_random", 64, node, weights_path=str(weights))
    cache = tmp_path / "weights_sha256.json"
    expected = encoder.weights_sha256(cache)
    assert expected == hashlib.sha256(weights.read_bytes()).hexdigest()
    (key,) = json.loads(cache.read_text())
    for stored in ("0" * 64 + "; rm -rf /", ["list"], "ab" * 31):  # not a SHA-256 hex digest: hashed again
        cache.write_text(json.dumps({key: stored}))
        assert encoder.weights_sha256(cache) == expected
    cache.write_text(json.dumps(["not", "a", "dict"]))
    assert encoder.weights_sha256(cache) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pth", "weights_sha256.json"]  # no temporary file
