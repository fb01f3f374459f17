"""The device-side transform gives the batch the per-tile CPU chain gave; workers keep only the CPU-only steps."""

from __future__ import annotations

import pytest
import torch
from torchvision.io import decode_jpeg, encode_jpeg

from src.data.augment import Augment, gaussian_blur
from src.data.normalizers import Reinhard
from src.data.transforms import BatchTransform, WorkerTransform, tile_transform
from src.models.examples import small_cnn
from src.models.tilenet import TileNet
from src.training.resumable import seed_epoch
from tests.data.test_normalizers import two_stain_image

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def tiles(n: int = 12, size: int = 32) -> torch.Tensor:
    return torch.stack([two_stain_image(size, seed)[0] for seed in range(n)])


def tile_net() -> TileNet:
    backbone = small_cnn(width=4, depth=1)
    backbone.input_mean, backbone.input_std = IMAGENET
    return TileNet(backbone, [2])


def cpu_chain(tile: torch.Tensor, flip_x: bool, flip_y: bool, turns: int) -> torch.Tensor:
    """The former per-tile chain of the workers (flips, then rotation) and TileNet's scaling, written out."""
    if flip_x:
        tile = tile.flip(-1)
    if flip_y:
        tile = tile.flip(-2)
    tile = torch.rot90(tile, turns, dims=(-2, -1))
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in IMAGENET)
    return (tile.float() / 255 - mean) / std


def test_flips_rotations_and_scaling_equal_the_cpu_chain_with_the_same_draws() -> None:
    augment, batch = Augment("xyr"), tiles()
    draws = augment.draw(len(batch), torch.Generator().manual_seed(7))
    assert draws["flip_x"].any() and not draws["flip_x"].all() and len(set(draws["rotation"].tolist())) == 4
    expected = torch.stack(
        [
            cpu_chain(tile, bool(x), bool(y), int(r))
            for tile, x, y, r in zip(batch, draws["flip_x"], draws["flip_y"], draws["rotation"], strict=True)
        ]
    )
    transform = BatchTransform(augment=augment, scale=tile_net().scale)
    out = transform(batch, torch.Generator().manual_seed(7))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_validation_batches_are_normalized_and_scaled_never_augmented() -> None:
    normalizer = Reinhard().fit([two_stain_image(64, seed=20)[0]])
    net, batch = tile_net(), tiles()
    out = BatchTransform(normalizer=normalizer, augment=None, scale=net.scale)(batch)
    torch.testing.assert_close(out, net.scale(normalizer.normalize(batch)), rtol=0, atol=0)


def test_training_batches_normalize_then_augment() -> None:
    normalizer = Reinhard().fit([two_stain_image(64, seed=20)[0]])
    augment, batch = Augment("xyr"), tiles()
    out = BatchTransform(normalizer=normalizer, augment=augment)(batch, torch.Generator().manual_seed(2))
    expected = augment.batch(normalizer.normalize(batch), torch.Generator().manual_seed(2))
    assert out.dtype == torch.uint8 and torch.equal(out, expected)


def test_stain_augmentation_draws_a_target_per_tile_on_the_device_side() -> None:
    normalizer = Reinhard().fit([two_stain_image(64, seed=20)[0]])
    batch = tiles(4)
    out = BatchTransform(normalizer=normalizer, augment=Augment("n"))(batch, torch.Generator().manual_seed(0))
    plain = normalizer.normalize(batch)
    assert all(not torch.equal(a, b) for a, b in zip(out, plain, strict=True))
    with pytest.raises(ValueError, match="needs a stain normalizer"):
        BatchTransform(augment=Augment("n"))


def test_blur_runs_on_the_batch_as_the_one_tile_blur() -> None:
    batch = tiles(4)
    out = BatchTransform(augment=Augment("b", blur_p=1.0, blur_sigmas=[1.5]))(batch)
    assert all(torch.equal(a, gaussian_blur(t, 1.5)) for a, t in zip(out, batch, strict=True))


def test_the_epoch_seed_gives_the_same_tiles_and_another_epoch_others() -> None:
    transform, batch = BatchTransform(augment=Augment("xyrbd", blur_p=0.5, jitter=0.2)), tiles()
    seed_epoch(42, 3)
    first = transform(batch)
    seed_epoch(42, 3)
    assert torch.equal(transform(batch), first)
    seed_epoch(42, 4)
    assert not torch.equal(transform(batch), first)


def test_channels_last_layout() -> None:
    out = BatchTransform(scale=tile_net().scale, channels_last=True)(tiles(2))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


def test_workers_keep_only_the_cpu_only_steps() -> None:
    assert tile_transform(Augment("xyrbd"), None, train=True) is None  # all on the device
    assert tile_transform(Augment("xyrj"), None, train=False) is None  # validation: never augmented
    worker = tile_transform(Augment("xyrj", jpeg_p=1.0), None, train=True)
    assert isinstance(worker, WorkerTransform)
    tile = tiles(1)[0]
    out = worker(tile)
    recompressed = [decode_jpeg(encode_jpeg(tile, quality=q)) for q in range(50, 101)]
    assert out.dtype == torch.uint8 and any(torch.equal(out, c) for c in recompressed)  # not flipped or rotated
    with pytest.raises(ValueError, match="needs a stain normalizer"):
        tile_transform(Augment("xn"), None, train=True)


def test_a_custom_augmentation_callable_runs_whole_in_the_workers() -> None:
    def invert(tile: torch.Tensor) -> torch.Tensor:
        return 255 - tile

    worker = tile_transform(invert, None, train=True)
    assert torch.equal(worker(tiles(1)[0]), 255 - tiles(1)[0])
    assert BatchTransform(augment=invert).augment is None


def test_the_transform_takes_uint8_batches_only() -> None:
    with pytest.raises(TypeError, match="uint8"):
        BatchTransform()(tiles(2).float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches() -> None:
    normalizer = Reinhard().fit([two_stain_image(64, seed=20)[0]])
    net, batch = tile_net(), tiles()
    transform = BatchTransform(normalizer=normalizer, augment=Augment("xyrbn", blur_p=0.5), scale=net.scale)
    on_cpu = transform(batch, torch.Generator().manual_seed(9))
    net.cuda()
    on_gpu = transform(batch.cuda(), torch.Generator().manual_seed(9))
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1.01 / 255 / 0.224, rtol=0)  # ≤ one grey level
