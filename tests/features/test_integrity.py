"""Feature bag integrity: NaN bags and flipped bytes are found and rebuilt (or refused by name), NaN encoders fail."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from src.data.sources import ShardSource
from src.features import integrity
from src.features.bags import FeatureBags, read_bag
from src.features.datamodule import BagDataModule
from src.features.integrity import (
    CHECKSUM_ATTR,
    DamagedBagError,
    NonFiniteFeaturesError,
    bag_damage,
    check_finite_features,
    features_sha256,
    forget_verified,
    scan_features,
)
from src.project import ensure_tiles, load_project


@pytest.fixture
def own_bags(tiny_cfg, tmp_path: Path):
    """The demo's bags of four slides in a folder of this test's own (damaging them touches no other test)."""
    cfg = tiny_cfg("experiment=demo_mil", f"dataset.bags.root={tmp_path / 'features'}")
    dataset, labels = load_project(cfg)
    dataset = ensure_tiles(cfg, dataset.filter({"slide": dataset.slides()[:4]}))
    bags = instantiate(cfg.dataset.bags)
    yield cfg, dataset, labels, bags
    forget_verified()


def _path(bags: FeatureBags, dataset, slide: str) -> Path:
    return bags.folder(dataset) / f"{slide}.h5"


def _features(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as bag:
        return bag["features"][()]


def test_the_checksum_is_the_sha256_of_the_stored_features(own_bags, monkeypatch: pytest.MonkeyPatch) -> None:
    _, dataset, _, bags = own_bags
    path = _path(bags, dataset, dataset.slides()[0])
    with h5py.File(path, "r") as bag:
        stored = bag["features"][()]
        assert bag.attrs[CHECKSUM_ATTR] == hashlib.sha256(stored.tobytes()).hexdigest()
        monkeypatch.setattr(integrity, "BLOCK_ROWS", 7)  # read in blocks: the same digest
        assert scan_features(bag["features"]) == (hashlib.sha256(stored.tobytes()).hexdigest(), 0)
    assert features_sha256(stored) == hashlib.sha256(stored.tobytes()).hexdigest()


def test_a_bag_of_nan_features_is_refused_by_name_then_extracted_again(
    own_bags, caplog: pytest.LogCaptureFixture
) -> None:
    """A bag written by hand with NaN features (and no checksum, like an older bag): found before training."""
    _, dataset, _, bags = own_bags
    slide = dataset.slides()[1]
    path = _path(bags, dataset, slide)
    good = _features(path)
    with h5py.File(path, "r+") as bag:
        features = bag["features"][()]
        features[3] = np.nan
        del bag["features"], bag["feats"]
        bag.create_dataset("features", data=features)
        del bag.attrs[CHECKSUM_ATTR]
    forget_verified()  # as in a new process
    with pytest.raises(RuntimeError, match=rf"{slide} \(damaged: 1 tile\(s\) with non-finite features"):
        bags.check(dataset)  # a DDP rank that must not write: refused, naming the slide
    with pytest.raises(DamagedBagError, match=rf"Feature bag {path} is damaged \(1 tile\(s\) with non-finite"):
        read_bag(path)
    with caplog.at_level(logging.WARNING):
        bags.ensure(dataset)
    assert f"of slide '{slide}' is damaged: 1 tile(s) with non-finite features" in caplog.text
    np.testing.assert_array_equal(_features(path), good)  # rebuilt from the tiles


def test_one_flipped_byte_in_the_features_is_a_checksum_mismatch(own_bags) -> None:
    cfg, dataset, labels, bags = own_bags
    slide = dataset.slides()[2]
    path = _path(bags, dataset, slide)
    good = _features(path)
    with h5py.File(path, "r") as bag:
        offset = bag["features"].id.get_offset() + 2 * 5  # the low byte of the 6th value: it stays finite
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x01]))
    damaged = _features(path)
    assert np.isfinite(damaged).all() and (damaged != good).sum() == 1
    forget_verified()
    assert bag_damage(path).startswith("features checksum mismatch (stored ")
    with pytest.raises(DamagedBagError, match=rf"Feature bag {path} of slide '{slide}' is damaged \(features checksum"):
        BagDataModule(cfg, labels, dataset).setup()  # the first use in a process without ensure
    bags.ensure(dataset)
    np.testing.assert_array_equal(_features(path), good)
    assert bag_damage(path) is None


def test_an_older_bag_without_checksum_gets_one_without_being_encoded_again(
    own_bags, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, dataset, _, bags = own_bags
    path = _path(bags, dataset, dataset.slides()[0])
    with h5py.File(path, "r+") as bag:
        expected = bag.attrs[CHECKSUM_ATTR]
        del bag.attrs[CHECKSUM_ATTR]
    good = _features(path)
    forget_verified()
    monkeypatch.setattr(bags.encoder, "build", lambda: pytest.fail("a sound older bag was encoded again"))
    bags.ensure(dataset)
    with h5py.File(path, "r") as bag:
        assert bag.attrs[CHECKSUM_ATTR] == expected
    np.testing.assert_array_equal(_features(path), good)
    assert not [p for p in path.parent.iterdir() if p.suffix not in (".h5", ".json")]  # no temporary file left


def test_bag_attributes_of_another_type_count_as_damage(own_bags) -> None:
    _, dataset, _, bags = own_bags
    slide = dataset.slides()[3]
    path = _path(bags, dataset, slide)
    with h5py.File(path, "r+") as bag:
        bag.attrs["num_tiles"] = str(bag.attrs["num_tiles"])  # plain data, but not an integer
    problem = bags.problem(bags.folder(dataset), slide, {"num_tiles": 0})
    assert problem == "damaged: unreadable (attribute num_tiles is str, not an integer)"
    bags.ensure(dataset)
    with h5py.File(path, "r") as bag:
        assert isinstance(bag.attrs["num_tiles"], np.integer)


class _Constant(torch.nn.Module):
    """An encoder whose features are ``value`` for every third tile and 0 elsewhere."""

    def __init__(self, value: float, width: int) -> None:
        super().__init__()
        self.value, self.width = value, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.zeros(len(x), self.width)
        features[::3] = self.value
        return features


def test_an_encoder_returning_nan_is_an_error_naming_the_slide(own_bags, tmp_path: Path, monkeypatch) -> None:
    _, dataset, _, bags = own_bags
    dataset = dataset.filter({"slide": dataset.slides()[:1]})
    (slide,) = dataset.slides()
    fresh = FeatureBags(bags.encoder, root=str(tmp_path / "fresh"))
    monkeypatch.setattr(fresh.encoder, "build", lambda: _Constant(float("nan"), fresh.encoder.num_features))
    n_tiles = ShardSource().tile_counts(dataset)[slide]
    with pytest.raises(NonFiniteFeaturesError) as raised:
        fresh.ensure(dataset)
    message = str(raised.value)
    assert "encoder=tiny_random returned non-finite features (NaN or inf) for " in message
    assert f"tiles of slide '{slide}'; no bag was written" in message and "precision fp32" in message
    assert f"for {len(range(0, n_tiles, 3))} of {n_tiles} tiles" in message
    assert not _path(fresh, dataset, slide).exists()
    # finite float32 features beyond float16's range would be stored as inf
    monkeypatch.setattr(fresh.encoder, "build", lambda: _Constant(1e6, fresh.encoder.num_features))
    with pytest.raises(NonFiniteFeaturesError, match=rf"slide '{slide}' reach 1e\+06, beyond float16.*dtype=float32"):
        fresh.ensure(dataset)


def test_fp16_overflow_is_named_as_the_likely_cause() -> None:
    features = np.zeros((4, 2), np.float32)
    features[1, 0] = np.inf
    with pytest.raises(NonFiniteFeaturesError, match=r"for 1 of 4 tiles of slide 'S1'.*fp16.*encoder.precision=bf16"):
        check_finite_features(features, features.astype(np.float16), "S1", "uni", "fp16", "float16")
    check_finite_features(features[[0, 2, 3]], features[[0, 2, 3]], "S1", "uni", "fp16", "float16")  # finite: fine
