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


URL = "http://127.0.0.1:9/evil.pth"
FETCHING = {  # issue 20 item 4: name: (edit of the stored hp.model, the line the error must hold)
    "pretrained node at another key": (
        lambda model, path: model.update(
            hidden_layer_width={
                "_target_": "src.models.backbone.timm_backbone",
                "name": "resnet18",
                "pretrained": True,
                "pretrained_cfg_overlay": {"url": URL},
            }
        ),
        "hp.model.hidden_layer_width._target_='src.models.backbone.timm_backbone' is not an allowed target here "
        "(conf/model/*.yaml places it only at hp.model.backbone._target_)",
    ),
    "url overlay on the backbone": (
        lambda model, path: model["backbone"].update(pretrained=True, pretrained_cfg_overlay={"url": URL}),
        f"hp.model.backbone.pretrained_cfg_overlay={{'url': '{URL}'}} could fetch or open a file",
    ),
    "hub model name": (
        lambda model, path: model["backbone"].update(name="hf-hub:lab/evil"),
        "hp.model.backbone.name='hf-hub:lab/evil' names a place to fetch from",
    ),
    "nested weights_path": (
        lambda model, path: model.update(
            hidden_layer_width={"_target_": "src.models.examples.small_cnn", "weights_path": str(path)}
        ),
        "hp.model.hidden_layer_width._target_='src.models.examples.small_cnn' is not an allowed target here",
    ),
}


@pytest.fixture
def no_fetch(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every way load_model could reach the network or read a weights file records its call and fails."""
    import socket
    import urllib.request

    import huggingface_hub
    import timm.models._builder
    import timm.models._hub
    import torch.hub

    import src.models.backbone

    calls = []

    def refuse(name):
        def call(*args, **kwargs):
            calls.append(name)
            raise OSError(f"{name} called")

        return call

    for module, name in [
        (socket.socket, "connect"),
        (socket, "create_connection"),
        (urllib.request, "urlopen"),
        (torch.hub, "load_state_dict_from_url"),
        (torch.hub, "download_url_to_file"),
        (timm.models._builder, "load_state_dict_from_url"),
        (timm.models._hub, "load_model_config_from_hf"),
        (timm.models._hub, "hf_hub_download"),
        (huggingface_hub, "hf_hub_download"),
        (src.models.backbone, "load_torch_file"),
    ]:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, refuse(f"{getattr(module, '__name__', module)}.{name}"))
    return calls


@pytest.mark.parametrize(("edit", "line"), FETCHING.values(), ids=FETCHING.keys())
def test_loading_fetches_and_opens_nothing_a_stored_config_names(
    trained: dict, tmp_path: Path, no_fetch: list, edit, line: str
) -> None:
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, weights)
    path = edited(trained, tmp_path, lambda model, params: edit(model, weights))
    with pytest.raises(UnsafeFileError) as raised:
        load_model(path)
    assert f"\n  - {line}" in str(raised.value)
    assert no_fetch == []  # nothing was requested, downloaded or read
    assert load_model(trained["path"]).params["hp"]["model"]["backbone"]["pretrained"] is False
    assert no_fetch == []
