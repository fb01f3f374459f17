"""The targets a config group names, and the check of a whole tree before Hydra instantiates it."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.config import CONFIG_DIR
from src.config.targets import group_targets, target_name
from src.models.examples import small_cnn
from src.trust import unsafe_nodes

SHIPPED = {"src.models.tilenet.TileNet", "src.models.backbone.timm_backbone", "src.models.examples.small_cnn"}


def test_the_model_group_names_its_targets() -> None:
    assert group_targets("model") >= SHIPPED  # a new conf/model/*.yaml adds its own


def test_nested_targets_of_a_group_are_collected(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.yaml").write_text(
        "_target_: a.A\nbackbone:\n  _target_: b.b\n  _args_: [{_target_: c.c}]\n"
    )
    assert group_targets("model", tmp_path) == {"a.A", "b.b", "c.c"}


def test_target_names_of_callables() -> None:
    assert target_name(small_cnn) == "src.models.examples.small_cnn"
    assert target_name("pkg.fn") == "pkg.fn"


def test_a_tree_of_allowed_targets_and_plain_values_is_safe() -> None:
    tree = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "tiny.yaml"))
    assert unsafe_nodes(tree, SHIPPED, "hp.model") == []


def test_every_way_to_name_code_is_reported_by_key() -> None:
    tree = {
        "_target_": "src.models.tilenet.TileNet",
        "backbone": {"_target_": "builtins.open", "file": "x", "mode": "w"},
        "hidden": {"layer": {"_target_": "os.system"}},
        "_args_": [{"_target_": "builtins.exec"}],
        "target_node": {"_target_": {"_target_": "builtins.eval"}},
        "name": "${oc.env:HOME}",
        "blob": b"bytes",
        1: "int key",
    }
    assert unsafe_nodes(tree, SHIPPED, "hp.model") == [
        "hp.model.backbone._target_='builtins.open' is not an allowed target",
        "hp.model.hidden.layer._target_='os.system' is not an allowed target",
        "hp.model._args_[0]._target_='builtins.exec' is not an allowed target",
        "hp.model.target_node._target_={'_target_': 'builtins.eval'} is not an allowed target",
        "hp.model.name='${oc.env:HOME}' is an interpolation (a stored config must hold plain values)",
        "hp.model.blob is a bytes, not plain data",
        "hp.model.1: the key 1 is not a string",
    ]
    assert unsafe_nodes(tree["backbone"], {"builtins.open"}) == []


def test_an_interpolation_could_build_a_node_the_check_never_saw(tmp_path: Path) -> None:
    """Why interpolations are refused: ``oc.create`` turns a string into a node that Hydra then instantiates."""
    marker = tmp_path / "marker"
    tree = {"_target_": "builtins.dict", "x": f"${{oc.create:{{_target_: builtins.open, file: {marker}, mode: w}}}}"}
    assert unsafe_nodes(tree, {"builtins.dict"}) == [
        f"x={tree['x']!r} is an interpolation (a stored config must hold plain values)"
    ]
    instantiate(OmegaConf.create(tree))  # the control: unchecked, it opens the file
    assert marker.exists()
