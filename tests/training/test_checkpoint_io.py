"""Every checkpoint the Trainer saves is complete under its final name or absent (src.training.checkpoint_io)."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pytest
import torch

from src.models.weights_file import load_torch_file
from src.training import checkpoint_io
from src.training.checkpoint_io import AtomicCheckpointIO
from tests.full_disk import small_disk

MB = 1 << 20


def _checkpoint(megabytes: float, epoch: int) -> dict:
    return {"state_dict": {"w": torch.full((int(megabytes * MB) // 4,), float(epoch))}, "epoch": epoch}


def test_a_full_disk_during_a_save_leaves_no_truncated_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "mkstemp", _no_tmpdir)  # nothing may go through $TMPDIR
    writer = AtomicCheckpointIO()
    with small_disk(tmp_path / "disk", 2 * MB, monkeypatch) as disk:
        folder = disk.path / "fold1" / "checkpoints"
        writer.save_checkpoint(_checkpoint(0.5, epoch=1), folder / "last.ckpt")
        for name in ("epoch2.ckpt", "last.ckpt"):  # a new file, and one replacing a good one
            with pytest.raises(OSError) as raised:
                writer.save_checkpoint(_checkpoint(4, epoch=2), folder / name)
            assert raised.value.errno == errno.ENOSPC
        assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no epoch2.ckpt, no temp file
        assert load_torch_file(folder / "last.ckpt")["epoch"] == 1  # the earlier checkpoint, whole


def test_a_save_killed_half_way_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer.save_checkpoint(_checkpoint(0.1, epoch=1), path)

    def half_then_killed(obj: dict, handle) -> None:
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # what a signal raises in the middle of torch.save

    monkeypatch.setattr(checkpoint_io.torch, "save", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        writer.save_checkpoint(_checkpoint(0.1, epoch=2), path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert load_torch_file(path)["epoch"] == 1


def _no_tmpdir(*args, **kwargs):
    raise AssertionError("a checkpoint was written through $TMPDIR")
