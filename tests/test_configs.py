"""Every shipped config composes, its keys fit its targets' signatures (and it instantiates where it has a
_target_); typos are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import CONFIG_DIR, compose
from src.config.signatures import check_signatures
from tests.conf_options import mil_models, normalizers, options, outcome_kinds

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name not in ("hydra",))


def group_options() -> list[tuple[str, str]]:
    options = []
    for group in GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            options.append((group, path.stem))
    return options


def _instantiable(node, path=""):
    """Yield every sub-config holding a _target_."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
            return
        for key in node:
            yield from _instantiable(node[key], f"{path}.{key}")


# options that need another group chosen with them
COMPANIONS = {("dataset", "features"): ["encoder=tiny_random"]}
# groups whose options are not placed under the group's name (their `# @package`; experiments: the root)
PACKAGES = {"experiment": "", "lr": "optimizer"}


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_option_composes_and_instantiates(group: str, option: str) -> None:
    overrides = [f"{group}={option}", *COMPANIONS.get((group, option), [])]
    cfg = compose(overrides)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    check_signatures(cfg)  # every _target_ node's keys are arguments of its target (no misspelt key shipped)
    package = PACKAGES.get(group, group)
    node = cfg[package] if package else cfg
    skip = ("trainer", "project")  # trainer needs runtime args; the demo project writes files
    for path, target in _instantiable(node, group):
        if path.startswith(skip) or ".project." in f".{path}.":
            continue
        instantiate(target)


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ConfigCompositionException):
        compose(["batch_sise=8"])


def test_unknown_group_option_is_rejected() -> None:
    with pytest.raises(ConfigCompositionException):
        compose(["model=resnet_18_typo"])


def test_nested_typo_is_rejected() -> None:
    with pytest.raises(ConfigCompositionException):
        compose(["optimizer.learning_rate=0.1"])


def test_config_dir_has_train_yaml() -> None:
    assert (Path(CONFIG_DIR) / "train.yaml").exists()


def test_contract_tests_find_their_subjects_in_conf() -> None:
    """The contract tests take their subjects from conf/ (tests/conf_options.py): at least the shipped ones."""
    assert set(mil_models()) >= {"attention_mil", "clam_sb", "mean_pool", "transmil"}
    assert "tiny" not in mil_models()  # a tile model is not a MIL model
    assert set(options("validation")) >= {"k_fold", "k_fold_site", "k_fold_manual", "bootstrap", "fixed", "external"}
    assert set(normalizers()) >= {"macenko", "reinhard"} and "none" not in normalizers()  # none builds nothing
    assert set(outcome_kinds()) >= {"categorical", "linear", "cox"}
