"""The code a config may make Hydra run: the ``_target_``s a config group names, and a check of a whole tree.

``hydra.utils.instantiate`` imports and calls every ``_target_`` in a tree (nested nodes, ``_args_`` lists
and ``_partial_`` nodes included) and resolves every ``${...}`` interpolation (``oc.create`` or ``oc.decode``
can even build new nodes). A tree that comes from a file we did not write, such as the model config stored in
a checkpoint, is therefore checked as a whole by :func:`~src.trust.unsafe_nodes` before anything in it is
instantiated. The rules live in :mod:`src.trust` (every layer uses them); this module names a group's targets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from src.trust import CONFIG_DIR, AllowList


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
