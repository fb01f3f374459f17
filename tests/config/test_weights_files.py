"""validate() refuses a weights_path file with pickled objects before any tile is extracted, naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.config import compose
from src.config.validate import validate
from src.errors import ConfigError, UnsafeFileError
from tests.payloads import save_with_payload


def test_a_pickled_model_weights_path_is_refused_by_validate(tmp_path: Path) -> None:
    weights = save_with_payload(tmp_path / "backbone.pth", tmp_path / "payload_ran")
    cfg = compose(["model=tiny", f"model.backbone.weights_path={weights}"])
    with pytest.raises(UnsafeFileError) as refused:
        validate(cfg)
    message = str(refused.value)
    assert f"model.backbone.weights_path={weights}" in message and "before any tile is extracted" in message
    assert "it names the Python object io.open" in message and not (tmp_path / "payload_ran").exists()


def test_a_pickled_encoder_weights_path_is_refused_by_validate(tmp_path: Path) -> None:
    weights = save_with_payload(tmp_path / "encoder.bin", tmp_path / "payload_ran", raw_pickle=True)
    cfg = compose(["dataset=features", "encoder=tiny_random", "model=attention_mil", f"encoder.weights_path={weights}"])
    with pytest.raises(UnsafeFileError, match=rf"encoder\.weights_path={weights}"):
        validate(cfg)
    assert not (tmp_path / "payload_ran").exists()


def test_plain_weights_pass_and_a_file_that_is_no_torch_file_names_its_key(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(3)}, tmp_path / "plain.pth")
    validate(compose(["model=tiny", f"model.backbone.weights_path={tmp_path / 'plain.pth'}"]))
    validate(compose(["model=tiny", f"model.backbone.weights_path={tmp_path / 'not_there_yet.pth'}"]))  # loaded later
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises((ConfigError, UnsafeFileError), match=r"model\.backbone\.weights_path=.*notes\.txt"):
        validate(compose(["model=tiny", f"model.backbone.weights_path={tmp_path / 'notes.txt'}"]))
