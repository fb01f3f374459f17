"""The data module places work by the training device: ``j`` (``augment.jpeg_on``), pinned memory, batch layout."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from src.data.collate import TileCollate
from src.data.transforms import WorkerTransform


@pytest.mark.parametrize(
    ("overrides", "on_device"),
    [
        (("trainer=cpu",), False),  # auto on a CPU: the workers, parallel processes
        (("trainer=gpu",), True),  # auto on CUDA: nvJPEG on the batch
        (("trainer=gpu", "augment.jpeg_on=workers"), False),
        (("trainer=cpu", "augment.jpeg_on=device"), True),
    ],
)
def test_auto_resolves_from_the_trainer_and_j_runs_once(make_module, overrides, on_device) -> None:
    module = make_module("shards", "augment=default", *overrides)
    augment, transform = module.augment, module.train.data.transform
    assert augment.jpeg_on == ("device" if on_device else "workers")
    assert ("j" in augment.batch_codes) is on_device  # the module's BatchTransform runs it
    if on_device:
        assert transform is None  # nothing left for the workers
    else:
        assert isinstance(transform, WorkerTransform) and transform.augment is augment
    assert module.val.data.transform is None  # validation: never augmented


@pytest.mark.parametrize(("trainer", "on_cuda"), [("trainer=cpu", False), ("trainer=gpu", True)])
def test_the_loaders_follow_the_training_device(make_module, trainer: str, on_cuda: bool) -> None:
    """Pinned memory and channels-last batches (decoded order, made contiguous on the device) for CUDA only."""
    module = make_module("shards", trainer)
    for loader in (module.train_dataloader(), module.val_dataloader()):
        assert loader.pin_memory is on_cuda and isinstance(loader.collate_fn, TileCollate)
        assert loader.collate_fn.channels_last is on_cuda
    batch = next(iter(module.val_dataloader()))
    image = batch["image"]
    assert image.dtype == torch.uint8 and image.is_contiguous(memory_format=torch.channels_last) is on_cuda
    expected = default_collate([module.val.data[i] for i in range(len(image))])
    assert all(torch.equal(batch[key], value) for key, value in expected.items())
