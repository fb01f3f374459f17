"""The code a config may make Hydra run: the ``_target_``s a config group names, and a check of a whole tree.

``hydra.utils.instantiate`` imports and calls every ``_target_`` in a tree (nested nodes, ``_args_`` lists
and ``_partial_`` nodes included) and resolves every ``${...}`` interpolation (``oc.create`` or ``oc.decode``
can even build new nodes). A tree that comes from a file we did not write, such as the model config stored in
a checkpoint, is therefore checked as a whole by :func:`unsafe_nodes` before anything in it is instantiated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config.compose import CONFIG_DIR

TARGET_KEY = "_target_"
PLAIN_TYPES = (str, int, float, bool, type(None))


def group_targets(group: str, config_dir: Path = CONFIG_DIR) -> frozenset[str]:
    """Every ``_target_`` named anywhere in the group's options (``conf/<group>/*.yaml``, nested nodes too).

    The files are read as text: nothing is imported or resolved.
    """
    targets = set()
    for path in sorted((config_dir / group).glob("*.yaml")):
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        targets |= {target for target in tree_targets(tree) if isinstance(target, str)}
    return frozenset(targets)


def target_name(target: str | Callable) -> str:
    """The dotted name a ``_target_`` uses for ``target`` (a name already, or a function or class)."""
    if isinstance(target, str):
        return target
    return f"{target.__module__}.{target.__qualname__}"


def unsafe_nodes(tree: Any, allowed: Iterable[str], key: str = "") -> list[str]:
    """What in ``tree`` could make ``instantiate`` import or call anything but the ``allowed`` targets.

    Args:
        tree: Plain data (dicts, lists, scalars), e.g. a model config as stored in a checkpoint.
        allowed: The dotted names ``_target_`` may take.
        key: The dotted key of ``tree`` itself, to name the offending keys by.

    Returns:
        One line per problem (empty when the tree is safe to instantiate): a ``_target_`` not in ``allowed``,
        a ``${...}`` interpolation (it would be resolved, and could build nodes this check never saw), or a
        key or value that is not plain data.
    """
    allowed = frozenset(allowed)
    problems: list[str] = []

    def check(node: Any, name: str) -> None:
        if isinstance(node, dict):
            for child, value in node.items():
                child_name = f"{name}.{child}" if name else str(child)
                if not isinstance(child, str):
                    problems.append(f"{child_name}: the key {child!r} is not a string")
                elif child == TARGET_KEY:
                    if not isinstance(value, str) or value not in allowed:
                        problems.append(f"{child_name}={value!r} is not an allowed target")
                else:
                    check(value, child_name)
        elif isinstance(node, list | tuple):
            for index, value in enumerate(node):
                check(value, f"{name}[{index}]")
        elif not isinstance(node, PLAIN_TYPES):
            problems.append(f"{name} is a {type(node).__name__}, not plain data")
        elif isinstance(node, str) and "${" in node:
            problems.append(f"{name}={node!r} is an interpolation (a stored config must hold plain values)")

    check(tree, key)
    return problems


def tree_targets(tree: Any) -> Iterator[Any]:
    """Every ``_target_`` value in a tree of dicts and lists, nested nodes and ``_args_`` included."""
    if isinstance(tree, dict):
        for name, value in tree.items():
            yield from [value] if name == TARGET_KEY else tree_targets(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from tree_targets(value)
