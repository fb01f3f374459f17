"""Batches of tile items as the loader processes make them and send them to the training process.

``default_collate`` gives the same batch, at two avoidable costs measured on the shard loader (2 workers,
256 px JPEG tiles): a decoded tile is a CxHxW *view* of the HxWxC pixels libjpeg writes, so stacking the
views into a contiguous (B, C, H, W) batch is a transposing copy (~1/5 of the decode); and every tensor of
the batch crosses to the training process through a shared-memory segment of its own (five per batch: the
images, targets, clinical inputs, slide and tile indices), each costing both processes a system-call round.

:class:`TileCollate` keeps the batch (same keys, values, shapes and dtypes) and
  - with ``channels_last=True`` (training on CUDA) stacks the images in their decoded memory order: a plain
    copy, giving a (B, C, H, W) batch with channels-last strides. The device side makes it contiguous
    (``src.data.transforms.BatchTransform``: free on a GPU); on a CPU the transposition stays in the workers;
  - in a loader process, sends the small fields by value (:class:`TileBatch`): one shared-memory segment
    per batch, the images'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info


def _hwc_ordered(image: object) -> bool:
    """Whether ``image`` is a CxHxW tensor over HxWxC-ordered memory (as decoded)."""
    return isinstance(image, torch.Tensor) and image.ndim == 3 and image.permute(1, 2, 0).is_contiguous()


class TileBatch(dict):
    """A collated batch on its way out of a loader process: images by shared memory, the rest by value.

    Pickled, its tensors other than ``image`` travel as NumPy arrays inside the pickle (a few hundred bytes:
    targets, clinical inputs, slide and tile indices) instead of one shared-memory segment each; it arrives
    as a plain ``dict`` with the same tensors.
    """

    def __copy__(self) -> TileBatch:
        return TileBatch(self)

    def __reduce__(self) -> tuple:
        fields = {
            key: _ByValue(value.numpy()) if key != "image" and isinstance(value, torch.Tensor) else value
            for key, value in self.items()
        }
        return _unpack, (fields,)


class _ByValue:
    """A small array pickled inside the message (not a tensor: torch would move it to shared memory)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _unpack(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: torch.from_numpy(v.array) if isinstance(v, _ByValue) else v for key, v in fields.items()}


class TileCollate:
    """``collate_fn`` of tile items (``src.data.tiles.TileItems``): ``default_collate``'s batch, made cheaper.

    Args:
        channels_last: Stack decoded (HxWxC-ordered) tiles as they lie: a channels-last-strided
            (B, C, H, W) batch (for training on CUDA, where the device makes it contiguous). Tiles laid out
            otherwise are stacked contiguous, as ``default_collate`` does.
    """

    def __init__(self, channels_last: bool = False) -> None:
        self.channels_last = bool(channels_last)

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One batch of ``items`` (dicts with the same keys); anything else goes to ``default_collate``."""
        if not items or not isinstance(items[0], Mapping) or "image" not in items[0]:
            return default_collate(list(items))
        in_worker = get_worker_info() is not None
        batch = TileBatch() if in_worker else {}
        for key in items[0]:
            values = [item[key] for item in items]
            if key == "image":
                batch[key] = self._images(values)
            elif isinstance(values[0], torch.Tensor):  # small: stacked in plain memory, sent by value
                batch[key] = torch.stack(values)
            else:
                batch[key] = default_collate(values)
        return batch

    def _images(self, images: list) -> torch.Tensor:
        """The images stacked (into shared memory in a loader process, as ``default_collate`` does)."""
        if self.channels_last and all(_hwc_ordered(image) for image in images):
            return default_collate([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)
        return default_collate(images)

    def __repr__(self) -> str:
        return f"TileCollate(channels_last={self.channels_last})"
