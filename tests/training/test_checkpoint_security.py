"""``load_model`` runs no code a checkpoint carries: not pickled in it, not named by its stored model config.

One tiny real fit gives a checkpoint of ours; each test edits a copy. Every malicious edit is shown live
first (Hydra, unchecked, does run it), then refused by ``load_model`` with the file named and nothing run.
"""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.errors import UnsafeFileError
from src.training.checkpoint import PARAMS_KEY, load_model, predict
from tests.payloads import save_with_payload
from tests.training.conftest import train_model
from tests.training.custom_targets import lab_backbone

LAB_BACKBONE = "tests.training.custom_targets.lab_backbone"


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread) -> dict:
    """A one-epoch fit of the default (tiny timm) model; its checkpoint as a path and as loaded data."""
    trainer, *_ = train_model(data_dir, tmp_path_factory.mktemp("security"), val={})
    path = trainer.outdir / "checkpoints" / "epoch1.ckpt"
    return {"path": path, "checkpoint": torch.load(path, weights_only=True), "net": trainer.module.net.eval()}


def edited(trained: dict, tmp_path: Path, edit) -> Path:
    """A copy of the checkpoint with ``edit(params["hp"]["model"], params)`` applied, saved in ``tmp_path``."""
    checkpoint = copy.deepcopy(trained["checkpoint"])
    edit(checkpoint[PARAMS_KEY]["hp"]["model"], checkpoint[PARAMS_KEY])
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    return tmp_path / "edited.ckpt"


def opens(marker: Path) -> dict:
    """A config node that, instantiated, opens ``marker`` for writing (creating it)."""
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def tiles(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_our_checkpoint_loads_and_predicts(trained: dict) -> None:
    model = load_model(trained["path"])
    images = tiles()
    (probs,) = predict(model, images)
    with torch.no_grad():
        expected = torch.softmax(trained["net"](images, torch.zeros(len(images), 0))[0], 1)
    torch.testing.assert_close(torch.as_tensor(probs), expected)


def test_code_pickled_in_a_checkpoint_is_refused_unrun(trained: dict, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = save_with_payload(tmp_path / "epoch1.ckpt", marker, content=trained["checkpoint"])
    with pytest.raises(UnsafeFileError, match=rf"{re.escape(str(path))} was not loaded: .*could run code"):
        load_model(path)
    assert not marker.exists()


OPEN = "_target_='builtins.open' is not an allowed target"
EDITS = {  # name: (edit of the stored hp.model, the line the error must hold)
    "backbone target": (lambda model, m: model.update(backbone=opens(m)), f"hp.model.backbone.{OPEN}"),
    "model target": (lambda model, m: (model.clear(), model.update(opens(m))), f"hp.model.{OPEN}"),
    "nested node": (
        lambda model, m: model["backbone"].update(drop_rate=opens(m)),
        f"hp.model.backbone.drop_rate.{OPEN}",
    ),
    "_args_ node": (
        lambda model, m: model["backbone"].update(_args_=[opens(m)]),
        f"hp.model.backbone._args_[0].{OPEN}",
    ),
    "interpolation": (
        lambda model, m: model["backbone"].update(
            drop_rate=f"${{oc.create:{{_target_: builtins.open, file: {m}, mode: w}}}}"
        ),
        "hp.model.backbone.drop_rate='${oc.create:",
    ),
}


@pytest.mark.parametrize(("edit", "line"), EDITS.values(), ids=EDITS.keys())
def test_a_stored_model_config_that_names_other_code_is_refused_unrun(
    trained: dict, tmp_path: Path, edit, line: str
) -> None:
    live = tmp_path / "live"  # the control: Hydra, unchecked, runs the edit while building the model config
    model_cfg = copy.deepcopy(trained["checkpoint"][PARAMS_KEY]["hp"]["model"])
    edit(model_cfg, live)
    with contextlib.suppress(InstantiationException):  # e.g. an opened file is no backbone name
        instantiate(OmegaConf.create(model_cfg))
    assert live.exists(), "the edit runs no code: the test would not notice a loader that ran it"
    marker = tmp_path / "marker"
    path = edited(trained, tmp_path, lambda model, params: edit(model, marker))
    with pytest.raises(UnsafeFileError) as raised:
        load_model(path)
    message = str(raised.value)
    assert message.startswith(f"{path} was not loaded: its params name code that is not allowed")
    assert f"\n  - {line}" in message
    assert "conf/model/*.yaml (src.models.backbone.timm_backbone, " in message  # what is allowed
    if OPEN in line:  # how to allow it (an interpolation cannot be allowed)
        assert message.endswith(
            "If you trust this checkpoint, allow them: load_model(path, allowed_targets=['builtins.open'])."
        )
    assert not marker.exists()


def test_an_outcome_kind_module_is_imported_only_when_allowed(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    package = tmp_path / "lab_kinds"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ordinal.py").write_text(f"open({str(marker)!r}, 'w')  # runs when imported\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def edit(model: dict, params: dict) -> None:
        params["outcomes"][0]["kind"] = "lab_kinds.ordinal"

    with pytest.raises(UnsafeFileError, match=r"outcomes\[0\]\.kind='lab_kinds\.ordinal' is not an allowed") as raised:
        load_model(edited(trained, tmp_path, edit))
    assert "allowed_kinds=['lab_kinds.ordinal']" in str(raised.value)
    assert not marker.exists()


def test_a_custom_target_loads_once_allowed(trained: dict, tmp_path: Path) -> None:
    path = edited(trained, tmp_path, lambda model, params: model["backbone"].update(_target_=LAB_BACKBONE))
    with pytest.raises(UnsafeFileError, match=re.escape(f"load_model(path, allowed_targets=['{LAB_BACKBONE}'])")):
        load_model(path)
    images = tiles()
    expected = predict(load_model(trained["path"]), images)
    for allowed in ([LAB_BACKBONE], [lab_backbone]):  # by dotted name, or the callable itself
        model = load_model(path, allowed_targets=allowed)
        assert model.params["hp"]["model"]["backbone"]["_target_"] == LAB_BACKBONE
        torch.testing.assert_close(predict(model, images)[0], expected[0])
