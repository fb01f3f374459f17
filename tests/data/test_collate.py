"""Tile batches from ``TileCollate`` equal ``default_collate``'s, in or out of loader processes."""

from __future__ import annotations

import io
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
import torch.multiprocessing
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.io import encode_jpeg

from src.data.augment import Augment
from src.data.collate import TileBatch, TileCollate
from src.data.normalizers import Reinhard
from src.data.tiles import TileItems, decode_tile
from src.data.transforms import BatchTransform
from tests.data.test_normalizers import two_stain_image


class JpegTiles(TileItems):
    """Tile items decoded from JPEG bytes, as the shard dataset decodes them."""

    def __init__(self, n: int = 24, size: int = 40) -> None:
        slide_idx = np.arange(n) % 3
        targets = np.arange(6, dtype=np.float32).reshape(3, 2)
        clinical = np.linspace(0, 1, 3, dtype=np.float32).reshape(3, 1)
        super().__init__(slide_idx, targets, clinical)
        self.blobs = [bytes(encode_jpeg(two_stain_image(size, seed)[0], quality=90).numpy()) for seed in range(n)]

    def read_image(self, tile: int) -> torch.Tensor:
        return decode_tile(self.blobs[tile])


def assert_same_batch(batch: dict, expected: dict) -> None:
    assert type(batch) is dict and list(batch) == list(expected)
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype and batch[key].shape == value.shape, key
        assert torch.equal(batch[key], value), key


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_batch_is_default_collates(channels_last: bool) -> None:
    data = JpegTiles()
    items = [data[i] for i in (3, 0, 7, 7, 11)]
    assert not items[0]["image"].is_contiguous()  # a decoded tile: CxHxW over HxWxC memory
    batch = TileCollate(channels_last)(items)
    assert_same_batch(batch, default_collate(items))
    image = batch["image"]
    assert image.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert image.is_contiguous() is not channels_last


def test_contiguous_tiles_are_stacked_contiguous() -> None:
    data = JpegTiles()
    items = [{**data[i], "image": data[i]["image"].contiguous()} for i in range(4)]
    batch = TileCollate(channels_last=True)(items)
    assert batch["image"].is_contiguous()
    assert_same_batch(batch, default_collate(items))


def test_a_worker_batch_crosses_with_its_images_only_in_shared_memory() -> None:
    items = [JpegTiles()[i] for i in range(4)]
    batch = TileBatch(TileCollate(channels_last=True)(items))
    buffer = io.BytesIO()
    ForkingPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(batch)
    received = pickle.loads(buffer.getvalue())
    assert_same_batch(received, default_collate(items))
    assert received["image"].is_shared() and not received["target"].is_shared()
    assert received["image"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels_last", [False, True])
def test_loader_processes_give_the_default_collate_batches(channels_last: bool) -> None:
    data = JpegTiles()
    order = list(np.random.default_rng(0).permutation(len(data)))
    loader = DataLoader(data, batch_size=8, sampler=order, num_workers=2, collate_fn=TileCollate(channels_last))
    expected = [default_collate([data[int(i)] for i in order[s : s + 8]]) for s in range(0, len(data), 8)]
    for batch, reference in zip(loader, expected, strict=True):
        assert_same_batch(batch, reference)


def test_items_without_images_go_to_default_collate() -> None:
    class Numbers(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> tuple[int, float]:
            return i, float(i)

    items = [Numbers()[i] for i in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(TileCollate(True)(items), default_collate(items), strict=True))


def test_the_device_side_gives_a_channels_last_batch_what_it_gives_a_contiguous_one() -> None:
    data = JpegTiles()
    items = [data[i] for i in range(12)]
    strided, plain = TileCollate(True)(items)["image"], default_collate(items)["image"]
    normalizer = Reinhard().fit([two_stain_image(64, seed=20)[0]])
    transform = BatchTransform(normalizer=normalizer, augment=Augment("xyrjbd", jpeg_on="device", blur_p=0.5))
    out = transform(strided, torch.Generator().manual_seed(1))
    assert out.is_contiguous() and torch.equal(out, transform(plain, torch.Generator().manual_seed(1)))
