"""The rules of src/trust.py, one test each: what a value read from a file may decide (no code, paths or fetches)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
import timm  # noqa: F401  (imported first: importing it makes wandb create its temporary folders)
import yaml

from src.errors import ConfigError, UnsafeFileError
from src.features.encoders import timm_encoder
from src.trust import (
    CONFIG_DIR,
    AllowList,
    inside,
    name_problem,
    offline_tree,
    override_problem,
    plain_name,
    resolve_name,
    unsafe_nodes,
)

TIMM_BACKBONE = "src.models.backbone.timm_backbone"


def evil_module(folder: Path, name: str) -> Path:
    """A module that creates ``marker`` when imported; returns the marker."""
    marker = folder / f"{name}.imported"
    (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Layer: pass\n")
    return marker


def test_a_plain_data_rule(tmp_path: Path) -> None:
    """(a) dicts with string keys, lists and scalars; no interpolation, no other object."""
    stored = yaml.safe_load((CONFIG_DIR / "model" / "tiny.yaml").read_text())
    assert unsafe_nodes(stored, AllowList.from_conf("model"), "hp.model") == []
    tree = {"a": [1, 2.5, True, None, "x"], "b": b"bytes", 3: "int key", "c": {"d": "${oc.env:HOME}"}}
    assert unsafe_nodes(tree, (), "params") == [
        "params.b is a bytes, not plain data",
        "params.3: the key 3 is not a string",
        "params.c.d='${oc.env:HOME}' is an interpolation (a stored config must hold plain values)",
    ]
    # a sweep file's overrides are plain data too: no key Hydra acts on, no interpolation, no imported name
    assert override_problem("optimizer.lr", "1e-3", "job 0") is None
    assert override_problem("normalizer.source", "ref.png", "job 0") is None  # a file name is not code
    assert override_problem("model", "resnet18", "job 0") is None
    for key, value in [
        ("model.backbone._target_", "os.system"),
        ("+callbacks.x._target_", "builtins.open"),
        ("hydra.job.chdir", "true"),
        ("hydra/launcher", "slurm_gpu"),
        ("optimizer.lr", "${oc.env:LR}"),
        ("loss.kind", "outputs.runs.run.fold1.evil"),
        ("dataset.backend", "lab.reader.Reader"),
    ]:
        assert override_problem(key, value, "job 3").startswith("job 3: "), key


def test_b_targets_only_where_conf_places_them() -> None:
    """(b) a stored _target_ must be one conf/<group>/*.yaml places at that key position, or allowed anywhere."""
    rules = AllowList.from_conf("model")
    assert rules.allows("backbone._target_", TIMM_BACKBONE)
    assert rules.allows("_target_", "src.models.tilenet.TileNet")
    assert not rules.allows("_target_", TIMM_BACKBONE)  # shipped, but not a model's top node
    tree = {
        "_target_": "src.models.tilenet.TileNet",
        "backbone": {"_target_": TIMM_BACKBONE, "name": "resnet18"},
        "hidden_layer_width": {"_target_": TIMM_BACKBONE, "name": "resnet18"},
        "_args_": [{"_target_": "src.models.examples.small_cnn"}],
        "dropout": {"_target_": "builtins.open"},
    }
    assert unsafe_nodes(tree, rules, "hp.model") == [
        f"hp.model.hidden_layer_width._target_='{TIMM_BACKBONE}' is not an allowed target here "
        "(conf/model/*.yaml places it only at hp.model.backbone._target_)",
        "hp.model._args_[0]._target_='src.models.examples.small_cnn' is not an allowed target here "
        "(conf/model/*.yaml places it only at hp.model.backbone._target_)",
        "hp.model.dropout._target_='builtins.open' is not an allowed target",
    ]
    trusted = AllowList.from_conf("model", anywhere=[TIMM_BACKBONE, "src.models.examples.small_cnn"])
    assert unsafe_nodes(tree, trusted, "hp.model") == [
        "hp.model.dropout._target_='builtins.open' is not an allowed target"
    ]
    # dotted layer names are checked by position as targets are (conf/encoder names them under model.kwargs)
    layers = AllowList.from_conf("encoder", keys=("act_layer",))
    assert layers.allows("model.kwargs.act_layer", "torch.nn.SiLU")
    assert not layers.allows("model.kwargs.act_layer", "tempfile.mkdtemp")


def test_c_dotted_names_are_imported_only_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(c) nothing a file names is imported unless the allow-list (conf/ or the caller's) has it."""
    marker = evil_module(tmp_path, "lab_layers")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnsafeFileError, match=r"act_layer='lab_layers.Layer' is not an allowed name"):
        resolve_name("lab_layers.Layer", ["torch.nn.SiLU"], "act_layer", "Name it in conf/.")
    assert not marker.exists() and "lab_layers" not in sys.modules
    assert resolve_name("lab_layers.Layer", ["lab_layers.Layer"], "act_layer", "").__name__ == "Layer"
    assert marker.exists()  # the control: once allowed, it is imported
    sys.modules.pop("lab_layers")
    assert name_problem("pkg.kind", ["categorical"], "outcomes[0].kind", "outcome kind") == (
        "outcomes[0].kind='pkg.kind' is not an allowed outcome kind"
    )
    assert name_problem("categorical", ["categorical"], "outcomes[0].kind", "outcome kind") is None
    # timm_encoder resolves a layer name only when conf/encoder names it (item 1: timm calls it once per block)
    calls = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: calls.append(a) or str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"encoder\.model\.kwargs\.act_layer='tempfile\.mkdtemp' is not an allowed name"
    ):
        timm_encoder("vit_tiny_patch16_224", kwargs={"act_layer": "tempfile.mkdtemp"})
    assert calls == []


def test_d_names_used_in_paths_are_plain_names(tmp_path: Path) -> None:
    """(d) a name read from a file and joined to a folder stays a plain name inside it."""
    assert plain_name("fold1", "folds[0].name") == "fold1"
    assert plain_name("fold 2.b", "folds[1].name") == "fold 2.b"
    for bad in ["", ".", "..", "/tmp/x", "../x", "a/b", "a\\b", "a\x00b", "a\nb", 5, None]:
        with pytest.raises(UnsafeFileError, match=r"splits\.json: folds\[0\]\.name=.* is not a plain name"):
            plain_name(bad, "folds[0].name", "splits.json")
    assert inside(tmp_path, tmp_path / "3")
    assert not inside(tmp_path, tmp_path / ".." / "3")
    assert not inside(tmp_path / "sweep", "/etc")


def test_e_a_stored_tree_fetches_and_opens_nothing() -> None:
    """(e) pretrained off and weights_path cleared in every node; URL-ish keys and values refused."""
    tree = {
        "_target_": "src.models.tilenet.TileNet",
        "backbone": {"_target_": TIMM_BACKBONE, "name": "resnet18", "pretrained": True, "weights_path": "/w.pt"},
        "head": {"inner": [{"pretrained": True, "weights_path": "/etc/passwd", "depth": 2}]},
    }
    offline, problems = offline_tree(tree, "hp.model")
    assert problems == []
    assert offline["backbone"] == {
        "_target_": TIMM_BACKBONE,
        "name": "resnet18",
        "pretrained": False,
        "weights_path": None,
    }
    assert offline["head"]["inner"][0] == {"pretrained": False, "weights_path": None, "depth": 2}
    assert tree["backbone"]["pretrained"] is True  # a copy: the caller's data is unchanged
    fetching = {
        "backbone": {
            "name": "hf-hub:lab/model",
            "pretrained_cfg_overlay": {"url": "http://127.0.0.1:9/w.pth"},
            "checkpoint_path": "/tmp/w.pth",
            "cache_dir": None,  # empty: harmless
            "kwargs": {"file": "s3://bucket/w.pth", "tag": "local-dir:/models/x"},
        }
    }
    lines = offline_tree(fetching, "hp.model")[1]
    assert lines == [
        "hp.model.backbone.name='hf-hub:lab/model' names a place to fetch from (refused in a stored config)",
        "hp.model.backbone.pretrained_cfg_overlay={'url': 'http://127.0.0.1:9/w.pth'} could fetch or open a file "
        "(refused in a stored config)",
        "hp.model.backbone.pretrained_cfg_overlay.url='http://127.0.0.1:9/w.pth' could fetch or open a file "
        "(refused in a stored config)",
        "hp.model.backbone.pretrained_cfg_overlay.url='http://127.0.0.1:9/w.pth' names a place to fetch from "
        "(refused in a stored config)",
        "hp.model.backbone.checkpoint_path='/tmp/w.pth' could fetch or open a file (refused in a stored config)",
        "hp.model.backbone.kwargs.file='s3://bucket/w.pth' could fetch or open a file (refused in a stored config)",
        "hp.model.backbone.kwargs.file='s3://bucket/w.pth' names a place to fetch from (refused in a stored config)",
        "hp.model.backbone.kwargs.tag='local-dir:/models/x' names a place to fetch from (refused in a stored config)",
    ]
