"""``augment.jpeg_on``: JPEG recompression (``j``) in the workers or on the batch, never both, same result."""

from __future__ import annotations

import random
import re

import pytest
import torch
from hydra.utils import instantiate

from src.config import compose
from src.data.augment import JPEG_ON, Augment, jpeg_on_device, recompress
from src.data.normalizers import Reinhard
from src.data.transforms import BatchTransform, WorkerTransform, tile_transform
from tests.data.test_normalizers import two_stain_image


def tiles(n: int = 16, size: int = 48) -> torch.Tensor:
    return torch.stack([two_stain_image(size, seed)[0] for seed in range(n)])


def worker_path(batch: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the workers make of each tile for the same choices: libjpeg at the drawn quality, one tile at a time."""
    chosen, quality = draws["jpeg"].tolist(), draws["quality"].tolist()
    return torch.stack([recompress(tile, q) if c else tile for tile, c, q in zip(batch, chosen, quality, strict=True)])


def test_the_device_path_on_a_cpu_batch_equals_the_worker_path_tile_for_tile() -> None:
    augment, batch = Augment("j", jpeg_on="device"), tiles()
    draws = augment.draw(len(batch), torch.Generator().manual_seed(3))
    assert draws["jpeg"].any() and not draws["jpeg"].all() and len(set(draws["quality"].tolist())) > 1
    out = augment.apply_draws(batch, draws)
    assert torch.equal(out, worker_path(batch, draws))
    changed = [not torch.equal(a, b) for a, b in zip(out, batch, strict=True)]
    assert changed == draws["jpeg"].tolist()  # the drawn tiles are recompressed, the others untouched


def test_j_comes_before_the_flips_and_rotations_as_in_the_workers() -> None:
    augment, batch = Augment("xyrj", jpeg_on="device"), tiles()
    draws = augment.draw(len(batch), torch.Generator().manual_seed(5))
    expected = Augment("xyr").apply_draws(worker_path(batch, draws), draws)
    assert torch.equal(augment.apply_draws(batch, draws), expected)


def test_the_worker_path_is_libjpeg_at_the_quality_python_random_draws() -> None:
    augment, tile = Augment("j", jpeg_on="workers", jpeg_p=1.0), tiles(1)[0]
    random.seed(11)
    out = augment.worker(tile)
    random.seed(11)
    random.random()
    assert torch.equal(out, recompress(tile, random.randint(*augment.jpeg_quality)))


def test_j_runs_in_one_place_only() -> None:
    batch, generator = tiles(), torch.Generator().manual_seed(1)
    on_device = Augment("xyrj", jpeg_on="device", jpeg_p=1.0)
    assert tile_transform(on_device, None, train=True) is None  # nothing left for the workers
    assert torch.equal(on_device.worker(batch[0]), batch[0])
    assert on_device.worker_codes == "" and "j" in on_device.batch_codes
    in_workers = Augment("xyrj", jpeg_on="workers", jpeg_p=1.0)
    assert isinstance(tile_transform(in_workers, None, train=True), WorkerTransform)
    assert in_workers.worker_codes == "j" and "j" not in in_workers.batch_codes
    assert "jpeg" not in in_workers.draw(len(batch), generator)
    assert torch.equal(Augment("j", jpeg_on="workers", jpeg_p=1.0).batch(batch, generator), batch)


def test_the_draws_are_reproducible_and_leave_the_other_draws_as_they_were() -> None:
    augment = Augment("xyrjbd", jpeg_on="device", jpeg_quality=(60, 70))
    first, again = (augment.draw(200, torch.Generator().manual_seed(8)) for _ in range(2))
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert first["quality"].min() == 60 and first["quality"].max() == 70
    other = augment.draw(200, torch.Generator().manual_seed(9))
    assert not torch.equal(first["jpeg"], other["jpeg"])
    in_workers = Augment("xyrjbd", jpeg_on="workers").draw(200, torch.Generator().manual_seed(8))
    assert all(torch.equal(first[key], in_workers[key]) for key in in_workers)


def test_the_batch_transform_normalizes_then_recompresses() -> None:
    normalizer = Reinhard().fit([two_stain_image(64, seed=20)[0]])
    augment, batch = Augment("xyrj", jpeg_on="device"), tiles()
    out = BatchTransform(normalizer=normalizer, augment=augment)(batch, torch.Generator().manual_seed(4))
    expected = augment.batch(normalizer.normalize(batch), torch.Generator().manual_seed(4))
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    ("jpeg_on", "accelerator", "expected"),
    [
        ("auto", "cpu", False),
        ("auto", "gpu", True),
        ("auto", "cuda", True),
        ("auto", "mps", False),
        ("auto", None, False),
        ("workers", "gpu", False),
        ("device", "cpu", True),
    ],
)
def test_auto_puts_j_on_the_device_only_when_training_on_cuda(jpeg_on, accelerator, expected) -> None:
    assert jpeg_on_device(jpeg_on, accelerator) is expected
    assert Augment("j", jpeg_on=jpeg_on).placed(accelerator).jpeg_device is expected


def test_auto_with_lightnings_auto_accelerator_follows_cuda() -> None:
    assert jpeg_on_device("auto", "auto") is torch.cuda.is_available()


def test_the_config_key_composes_and_a_bad_value_names_the_key_and_the_choices() -> None:
    assert instantiate(compose([]).augment).jpeg_on == "auto"
    assert instantiate(compose(["augment.jpeg_on=device"]).augment).jpeg_device
    assert compose(["augment=none", "augment.jpeg_on=workers"]).augment.jpeg_on == "workers"
    with pytest.raises(ValueError, match=re.escape("augment.jpeg_on='gpu'")) as error:
        compose(["augment.jpeg_on=gpu"])
    assert all(choice in str(error.value) for choice in JPEG_ON)
    with pytest.raises(ValueError, match=r"augment\.jpeg_on"):
        Augment("j", jpeg_on="both")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nvjpeg_on_a_cuda_batch_matches_libjpeg_on_the_cpu() -> None:
    augment, batch = Augment("j", jpeg_on="device", jpeg_quality=(50, 100)), tiles(32, 64)
    draws = augment.draw(len(batch), torch.Generator().manual_seed(6))
    on_cpu = augment.apply_draws(batch, draws)
    on_gpu = augment.apply_draws(batch.cuda(), draws)
    assert on_gpu.is_cuda and on_gpu.dtype == torch.uint8 and on_gpu.shape == batch.shape
    on_gpu, chosen = on_gpu.cpu(), draws["jpeg"]
    assert torch.equal(on_gpu[~chosen], batch[~chosen])  # the tiles not drawn are untouched
    gap = (on_gpu[chosen].float() - on_cpu[chosen].float()).abs().mean(dim=(1, 2, 3))
    jpeg_error = (on_cpu[chosen].float() - batch[chosen].float()).abs().mean(dim=(1, 2, 3))
    assert gap.mean() <= 1.5, f"nvJPEG vs libjpeg: {gap.tolist()} grey levels"  # two codecs, same quality
    assert (gap <= jpeg_error + 1.0).all(), f"{gap.tolist()} vs the JPEG error itself {jpeg_error.tolist()}"
