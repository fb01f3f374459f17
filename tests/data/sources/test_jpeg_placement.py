"""The data module puts ``j`` in the workers or on the device (``augment.jpeg_on``), the same object on both sides."""

from __future__ import annotations

import pytest

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
