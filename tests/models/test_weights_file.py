"""Weights files are read with the weights-only unpickler: one that carries code is refused, unrun."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import timm
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from src.config import compose
from src.errors import UnsafeFileError
from src.models.backbone import load_backbone_weights
from src.models.weights_file import load_torch_file
from tests.payloads import save_with_payload


@pytest.mark.parametrize("raw_pickle", [False, True], ids=["torch.save", "pickle.dump"])
def test_the_payload_is_live(tmp_path: Path, raw_pickle: bool) -> None:
    """Control: the unsafe loader runs the payload, so the tests below would notice a loader that did."""
    marker = tmp_path / "marker"
    path = save_with_payload(tmp_path / "weights.pth", marker, raw_pickle=raw_pickle)
    with contextlib.suppress(RuntimeError):  # a raw pickle runs, then fails torch's magic-number check
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("model", ["tiny", "custom_example"])
@pytest.mark.parametrize("raw_pickle", [False, True], ids=["torch.save", "pickle.dump"])
def test_backbone_weights_that_carry_code_are_refused_unrun(tmp_path: Path, model: str, raw_pickle: bool) -> None:
    marker = tmp_path / "marker"
    path = save_with_payload(tmp_path / "weights.pth", marker, raw_pickle=raw_pickle)
    cfg = compose([f"model={model}", f"model.backbone.weights_path={path}"])
    with pytest.raises(InstantiationException) as raised:  # Hydra wraps what the backbone factory raises
        instantiate(cfg.model.backbone)
    error = raised.value.__cause__
    assert isinstance(error, UnsafeFileError)
    assert re.search(rf"{re.escape(str(path))} was not loaded: .*could run code", str(error))
    assert not marker.exists()


def test_the_message_names_the_refused_object(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = save_with_payload(tmp_path / "weights.pth", marker)
    with pytest.raises(UnsafeFileError, match=r"weights\.pth was not loaded: .*names the Python object \S*open"):
        load_backbone_weights(nn.Linear(2, 2), path)
    assert not marker.exists()
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "module.pth")  # a whole pickled module, not a state dict
    with pytest.raises(UnsafeFileError, match=r"names the Python object torch\.nn\.modules\.linear\.Linear"):
        load_torch_file(tmp_path / "module.pth")


def test_a_file_that_is_no_torch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(UnsafeFileError, match=r"notes\.pth was not loaded"):
        load_torch_file(path)


def test_plain_state_dicts_still_load(tmp_path: Path) -> None:
    source = timm.create_model("test_resnet", num_classes=3)
    torch.save(source.state_dict(), tmp_path / "plain.pth")
    loaded = load_torch_file(tmp_path / "plain.pth")
    assert set(loaded) == set(source.state_dict())
    assert loaded["fc.weight"].device == torch.device("cpu")
