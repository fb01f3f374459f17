"""Every hint that names a config key names the running command's key: train.py's (``project.mpp_override``,
``dataset.backend``, ``encoder.weights_path``, load_model's arguments) by default, predict.py's
(``mpp_override=``, ``backend=``, ``encoder_weights=``, ``allowed_targets=``) inside ``command_keys(PREDICT_KEYS)``,
which ``src.inference.run`` sets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from src.command_keys import PREDICT_KEYS, TRAIN_KEYS, command_keys, config_key
from src.errors import UnsafeFileError
from src.features.encoders import Encoder
from src.slides import mpp
from src.slides.discover import unsupported_format
from src.slides.mpp import resolve_mpp
from src.slides.reader import SlideError
from src.training.checkpoint import check_code


def no_mpp_error() -> str:
    with pytest.raises(SlideError) as raised:
        resolve_mpp("b.tiff", {}, None)
    return str(raised.value)


def dicom_on_tiffslide(tmp_path: Path) -> str:
    (tmp_path / "a.dcm").write_bytes(b"\0" * 128 + b"DICM")
    return unsupported_format(tmp_path / "a.dcm", "tiffslide")


def missing_encoder_weights(tmp_path: Path) -> str:
    encoder = Encoder("uni", 8, {"_target_": "torch.nn.Identity"}, weights_path=str(tmp_path / "missing.bin"))
    with pytest.raises(FileNotFoundError) as raised:
        encoder.check()
    return str(raised.value)


def code_not_allowed(tmp_path: Path) -> str:
    params = {"hp": {"model": {"_target_": "builtins.open"}}, "outcomes": [{"kind": "my_lab.ordinal"}]}
    with pytest.raises(UnsafeFileError) as raised:
        check_code(tmp_path / "x.ckpt", params)
    return str(raised.value)


# (message, what train.py's hint says, what predict.py's says)
HINTS: dict[str, tuple[Callable[[Path], str], str, str]] = {
    "no MPP": (lambda _: no_mpp_error(), "set it with project.mpp_override=", "set it with mpp_override="),
    "format": (dicom_on_tiffslide, "; use dataset.backend=openslide", "; use backend=openslide"),
    "encoder weights": (missing_encoder_weights, "or point encoder.weights_path at", "or point encoder_weights at"),
    "allowed code": (
        code_not_allowed,
        "allow them: load_model(path, allowed_targets=['builtins.open'], allowed_kinds=['my_lab.ordinal']).",
        "allow them: allowed_targets=[builtins.open] allowed_kinds=[my_lab.ordinal].",
    ),
}


@pytest.mark.parametrize("hint", HINTS, ids=HINTS)
def test_a_hint_names_the_key_of_the_command_being_run(hint: str, tmp_path: Path) -> None:
    message, train, predict = HINTS[hint]
    assert train in message(tmp_path)
    with command_keys(PREDICT_KEYS):
        predicted = message(tmp_path)
    assert predict in predicted
    assert "project." not in predicted and "dataset." not in predicted and "load_model(" not in predicted
    assert train in message(tmp_path)  # the keys are train.py's again after the block


def test_the_unused_override_warning_names_only_keys_predict_has(caplog: pytest.LogCaptureFixture) -> None:
    mpp._override_unused.clear()
    with caplog.at_level(logging.WARNING, logger="src.slides.mpp"), command_keys(PREDICT_KEYS):
        assert resolve_mpp("own.svs", {"aperio.MPP": "0.25"}, 0.5) == 0.25
    (record,) = caplog.records
    assert "mpp_override=0.5 is not used for slide own.svs" in record.message
    assert "project." not in record.message and "mpp_column" not in record.message  # predict.py has no column
    mpp._override_unused.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.slides.mpp"):
        resolve_mpp("own.svs", {"aperio.MPP": "0.25"}, 0.5)
    assert "project.mpp_override=0.5 is not used" in caplog.text and "project.mpp_column replaces" in caplog.text


def test_every_setting_has_a_key_in_each_command_table() -> None:
    assert set(PREDICT_KEYS) == set(TRAIN_KEYS)
    with pytest.raises(KeyError, match="'mpp_overide' is not one of"):
        config_key("mpp_overide")
