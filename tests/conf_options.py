"""The options that conf/ ships, for contract tests that take their subjects from conf/.

A new ``conf/<group>/<option>.yaml`` (a MIL model, a splitter, a stain normalizer, a loss of a new outcome kind)
is then tested by every contract test of its kind without editing a test. Options are listed by reading the
files (at collection time: nothing is composed); a subject is built by composing its option as
``python train.py <group>=<option>`` would and instantiating its node.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.config import CONFIG_DIR, compose
from src.config.signatures import keyword_names, locate

# options of a group that need another group chosen with them
COMPANIONS = {"model": ["dataset=features", "encoder=tiny_random"]}


def options(group: str) -> list[str]:
    """Every option of ``conf/<group>/``, by name."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def option_file(group: str, option: str) -> dict[str, Any]:
    """The option's file as plain data (read as text: nothing is composed or imported)."""
    return yaml.safe_load((CONFIG_DIR / group / f"{option}.yaml").read_text()) or {}


@functools.cache
def composed(group: str, option: str) -> DictConfig:
    """The training config with ``<group>=<option>`` (composed once per test process)."""
    return compose([f"{group}={option}", *COMPANIONS.get(group, [])])


def mil_models() -> list[str]:
    """The ``conf/model`` options that are MIL models: their target takes ``n_features`` (README "MIL")."""
    found = []
    for option in options("model"):
        target = option_file("model", option).get("_target_")
        if target and "n_features" in (keyword_names(locate(target)) or []):
            found.append(option)
    return found


def conf_mil_model(option: str, **arguments: Any) -> Any:
    """The MIL model of ``conf/model/<option>.yaml`` (a partial), called with ``arguments`` (they win)."""
    return instantiate(composed("model", option).model)(**arguments)


def conf_splitter(option: str, **settings: Any) -> Any:
    """The splitter of ``conf/validation/<option>.yaml``, with those of ``settings`` that its node has."""
    node = composed("validation", option).validation.splitter
    return instantiate(node, **{key: value for key, value in settings.items() if key in node})


def normalizers() -> list[str]:
    """The ``conf/normalizer`` options that build a normalizer (``none`` builds nothing)."""
    return [option for option in options("normalizer") if option_file("normalizer", option).get("_target_")]


def conf_normalizer(option: str, **settings: Any) -> Any:
    """The stain normalizer of ``conf/normalizer/<option>.yaml``, ``settings`` replacing its keys."""
    return instantiate(composed("normalizer", option).normalizer, **settings)


def outcome_kinds() -> list[str]:
    """Every outcome kind a ``conf/loss`` option names (``kind:``, and the kinds of its ``per_outcome``)."""
    kinds = set()
    for option in options("loss"):
        loss = option_file("loss", option)
        kinds.add(loss.get("kind"))
        kinds.update(entry.get("kind") for entry in (loss.get("per_outcome") or {}).values())
    return sorted(kind for kind in kinds if kind)
