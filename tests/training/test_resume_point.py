"""An unusable last.ckpt (corrupt, pickled, older) never stops a resume: the newest usable epoch file, or a restart."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from src.errors import UnsafeFileError
from src.models.weights_file import load_torch_file
from src.training.resume_point import check_resumable, check_resume_point
from tests.payloads import save_with_payload
from tests.training.conftest import train_model


@pytest.fixture(scope="module")
def trained_fold(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread) -> Path:
    """A fold folder after epochs 1 and 2: checkpoints/epoch1.ckpt, epoch2.ckpt and last.ckpt (of epoch 2)."""
    base = tmp_path_factory.mktemp("resume_point")
    train_model(data_dir, base, "epochs=[1,2]", "+trainer.limit_train_batches=2")
    return base / "model"


@pytest.fixture
def fold(trained_fold: Path, tmp_path: Path) -> Path:
    """A copy of the trained fold's checkpoints that a test may damage."""
    shutil.copytree(trained_fold / "checkpoints", tmp_path / "fold1" / "checkpoints")
    return tmp_path / "fold1"


def test_a_truncated_last_ckpt_falls_back_to_the_newest_epoch_checkpoint(
    fold: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = fold / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a save that a full disk cut short
    with caplog.at_level(logging.WARNING):
        assert check_resume_point(fold) == last
    assert last.samefile(fold / "checkpoints" / "epoch2.ckpt")  # the resume point is epoch 2's checkpoint
    assert (fold / "checkpoints" / "last.ckpt.unusable").exists()
    message = caplog.text
    assert str(last) in message and "not a whole checkpoint archive" in message
    assert "continues from epoch2.ckpt" in message


def test_a_pickled_last_ckpt_is_never_unpickled_and_falls_back(fold: Path, caplog: pytest.LogCaptureFixture) -> None:
    last = fold / "checkpoints" / "last.ckpt"
    marker = fold.parent / "payload_ran"
    save_with_payload(last, marker, content=load_torch_file(last))  # a real checkpoint with a payload added
    with caplog.at_level(logging.WARNING):
        assert check_resume_point(fold) == last
    assert not marker.exists()  # the payload never ran
    assert last.samefile(fold / "checkpoints" / "epoch2.ckpt")
    assert "pickled objects" in caplog.text and "it was not unpickled" in caplog.text


def test_an_epoch_checkpoint_without_its_results_row_is_skipped(fold: Path, caplog: pytest.LogCaptureFixture) -> None:
    """epoch{N}.ckpt written before its row was in it (an older version) would lose that row: the one before."""
    folder = fold / "checkpoints"
    (folder / "last.ckpt").write_bytes(b"not a zip")
    older = load_torch_file(folder / "epoch2.ckpt")
    outputs = next(state for key, state in older["callbacks"].items() if key.startswith("EpochOutputs"))
    outputs["rows"] = [row for row in outputs["rows"] if row["epoch"] != 2]
    torch.save(older, folder / "epoch2.ckpt")
    with caplog.at_level(logging.WARNING):
        assert check_resume_point(fold) == folder / "last.ckpt"
    assert (folder / "last.ckpt").samefile(folder / "epoch1.ckpt")
    assert "epoch2.ckpt: it lacks the results rows of epoch(s) [2]" in caplog.text


def test_without_any_usable_checkpoint_the_fold_restarts_and_says_so(
    fold: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = fold / "checkpoints"
    for name in ("last.ckpt", "epoch1.ckpt", "epoch2.ckpt"):
        (folder / name).write_bytes(b"\0" * 100)
    (folder / "last.ckpt.4242.0123abcd.partial").write_bytes(b"a save killed with -9")
    (folder / ".epoch2.ckpt.4242.0123abcd.tmp").write_bytes(b"a save killed under the name older versions used")
    with caplog.at_level(logging.WARNING):
        assert check_resume_point(fold) is None
    assert sorted(p.name for p in folder.iterdir()) == ["epoch1.ckpt", "epoch2.ckpt", "last.ckpt.unusable"]
    assert "starts again from epoch 1" in caplog.text and "epoch1.ckpt: it is not a whole checkpoint" in caplog.text


def test_a_good_last_ckpt_is_kept_as_it_is(fold: Path) -> None:
    last = fold / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    assert check_resume_point(fold) == last and last.read_bytes() == before
    assert not (fold / "checkpoints" / "last.ckpt.unusable").exists()


def test_the_trainer_api_refuses_a_damaged_or_pickled_resume_point_naming_it(fold: Path, tmp_path: Path) -> None:
    last = fold / "checkpoints" / "last.ckpt"
    damaged = bytearray(last.read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = bytes(b ^ 0xFF for b in damaged[middle : middle + 64])  # bit rot in the weights
    (tmp_path / "damaged.ckpt").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"damaged\.ckpt: its record .* fails its CRC32 check"):
        check_resumable(tmp_path / "damaged.ckpt")
    save_with_payload(tmp_path / "pickled.ckpt", tmp_path / "payload_ran", content=load_torch_file(last))
    with pytest.raises(UnsafeFileError, match=r"pickled\.ckpt: it holds pickled objects"):
        check_resumable(tmp_path / "pickled.ckpt")
    assert not (tmp_path / "payload_ran").exists()
    check_resumable(last)  # a good one passes
