"""The code a config may make Hydra run: the ``_target_``s a config group names, and a check of a whole tree.

``hydra.utils.instantiate`` imports and calls every ``_target_`` in a tree (nested nodes, ``_args_`` lists
and ``_partial_`` nodes included) and resolves every ``${...}`` interpolation (``oc.create`` or ``oc.decode``
can even build new nodes). A tree that comes from a file we did not write, such as the model config stored in
a checkpoint, is therefore checked as a whole by :func:`~src.trust.unsafe_nodes` before anything in it is
instantiated. The rules live in :mod:`src.trust` (every layer uses them); this module names a group's targets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from src.config.compose import CONFIG_DIR
from src.trust import PLAIN_TYPES, TARGET_KEY, AllowList, named, unsafe_nodes

__all__ = ["PLAIN_TYPES", "TARGET_KEY", "group_targets", "target_name", "tree_targets", "unsafe_nodes"]


def group_targets(group: str, config_dir: Path = CONFIG_DIR) -> frozenset[str]:
    """Every ``_target_`` named anywhere in the group's options (``conf/<group>/*.yaml``, nested nodes too).

    The files are read as text: nothing is imported or resolved.
    """
    return AllowList.from_conf(group, config_dir=config_dir).names()


def target_name(target: str | Callable) -> str:
    """The dotted name a ``_target_`` uses for ``target`` (a name already, or a function or class)."""
    if isinstance(target, str):
        return target
    return f"{target.__module__}.{target.__qualname__}"


def tree_targets(tree: Any) -> Iterator[Any]:
    """Every ``_target_`` value in a tree of dicts and lists, nested nodes and ``_args_`` included."""
    return (value for _, value in named(tree, (TARGET_KEY,)))
