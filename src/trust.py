"""What a value read from a file may decide: not the code that runs, not where files go, not what is fetched.

A checkpoint's ``workbench_params``, a run folder's ``params.json`` and ``splits.json``, the splits cache, a
feature bag's attributes, a study's trial attributes and a sweep file may come from a colleague, a copied run
folder or a shared cache. Every loader applies these rules to what it reads before it imports, builds, opens,
writes or fetches anything:

(a) **Plain data** (:func:`unsafe_nodes`): dicts with string keys, lists, strings, numbers, booleans and None;
    no ``${...}`` interpolation (OmegaConf would resolve it, and ``oc.create`` can build nodes no check saw).
(b) **Targets by position** (:class:`AllowList`): a ``_target_`` is one that ``conf/<group>/*.yaml`` places at
    the same key position (a stored ``hp.model.backbone._target_`` only from the ``backbone`` nodes of
    ``conf/model``), or one the caller allows anywhere (``load_model(allowed_targets=...)``).
(c) **Dotted names** (:func:`name_problem`, :func:`resolve_name`): a name the code imports (an outcome kind, a
    normalizer class, a timm layer) comes from an allow-list built from ``conf/`` or given by the caller.
(d) **Names in paths** (:func:`plain_name`, :func:`inside`): a name that becomes part of a path is one plain
    name inside its parent folder: no separator, not empty, ``.`` or ``..``, no NUL or control character.
(e) **Offline** (:func:`offline_tree`): a stored model tree fetches and opens nothing: ``pretrained`` is forced
    off and ``weights_path`` cleared in every node (the checkpoint's own weights replace them); URL-ish keys
    (``pretrained_cfg_overlay``, ``url``, ``hf_hub_id``, ``file``, ...) and values (``https://``, ``hf-hub:``,
    ``local-dir:``) are refused.

A refusal is an :class:`~src.errors.UnsafeFileError` (or the caller's own error type) naming the file, the key
and the value, what is allowed, and how to allow it when the file is trusted.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.errors import UnsafeFileError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
TARGET_KEY = "_target_"
PLAIN_TYPES = (str, int, float, bool, type(None))
LIST_ITEM = "[]"  # the position of every item of a list

# (e) keys that make timm or the hub fetch or open something, and values that name a place to fetch from
URL_KEYS = frozenset(
    {
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "url",
        "hf_hub_id",
        "hf_hub_filename",
        "hf_hub_revision",
        "file",
        "checkpoint_path",
        "cache_dir",
    }
)
URL_VALUE = re.compile(r"^\s*(?:[a-z][a-z0-9+.\-]*://|hf[-_]hub:|local-dir:)", re.IGNORECASE)
FORCED = {"pretrained": False, "weights_path": None}  # (e) in every node of a stored tree


# ------------------------------------------------------------------------------------------- (b), (c) allow-lists
@dataclass(frozen=True)
class AllowList:
    """The dotted names a stored tree may hold, by key position.

    Attributes:
        by_position: Position of a value (``_target_``, ``backbone._target_``, ``model.kwargs.act_layer``; list
            items as ``[]``) → the names ``conf/`` holds there.
        anywhere: Names allowed at every position (what the caller allows).
        source: Where ``by_position`` comes from, for messages (``conf/model/*.yaml``).
    """

    by_position: Mapping[str, frozenset[str]] = field(default_factory=dict)
    anywhere: frozenset[str] = frozenset()
    source: str = "the caller"

    @classmethod
    def from_conf(
        cls,
        group: str,
        keys: Iterable[str] = (TARGET_KEY,),
        anywhere: Iterable[str] = (),
        config_dir: Path = CONFIG_DIR,
    ) -> AllowList:
        """The names that ``conf/<group>/*.yaml`` holds under ``keys`` at each position, plus ``anywhere``.

        The files are read as text: nothing is imported or resolved.
        """
        by_position: dict[str, set[str]] = {}
        keys = tuple(keys)
        for tree in _group_trees(Path(config_dir), group):
            for position, value in named(tree, keys):
                if isinstance(value, str):
                    by_position.setdefault(position, set()).add(value)
        frozen = {position: frozenset(names) for position, names in by_position.items()}
        return cls(frozen, frozenset(anywhere), f"conf/{group}/*.yaml")

    def names(self) -> frozenset[str]:
        """Every name allowed somewhere."""
        return frozenset().union(*self.by_position.values(), self.anywhere)

    def allows(self, position: str, name: Any) -> bool:
        """Whether ``name`` may stand at ``position``."""
        return isinstance(name, str) and (name in self.anywhere or name in self.by_position.get(position, ()))

    def problem(self, position: str, value: Any, key: str, what: str = "target", root: str = "") -> str | None:
        """The line refusing ``value`` at ``position`` (shown as ``key``; the tree's own key is ``root``), or None."""
        if self.allows(position, value):
            return None
        line = f"{key}={value!r} is not an allowed {what}"
        places = sorted(p for p, names in self.by_position.items() if isinstance(value, str) and value in names)
        if places:
            shown = ", ".join(f"{root}.{p}" if root else p for p in places)
            line += f" here ({self.source} places it only at {shown})"
        return line


@functools.lru_cache(maxsize=64)
def _group_trees(config_dir: Path, group: str) -> tuple[Any, ...]:
    return tuple(yaml.safe_load(path.read_text()) or {} for path in sorted((config_dir / group).glob("*.yaml")))


def named(tree: Any, keys: Iterable[str], position: str = "") -> Iterator[tuple[str, Any]]:
    """``(position, value)`` of every entry of ``tree`` whose key is one of ``keys``, nested nodes and lists too."""
    keys = frozenset(keys)
    if isinstance(tree, dict):
        for child, value in tree.items():
            child_position = f"{position}.{child}" if position else str(child)
            if child in keys:
                yield child_position, value
            else:
                yield from named(value, keys, child_position)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from named(value, keys, f"{position}{LIST_ITEM}")


def name_problem(value: Any, allowed: Iterable[str], key: str, what: str) -> str | None:
    """(c) The line refusing a dotted name read from a file (``key=value``), or None when ``allowed`` has it."""
    if isinstance(value, str) and value in set(allowed):
        return None
    return f"{key}={value!r} is not an allowed {what}"


def resolve_name(name: str, allowed: Iterable[str], key: str, hint: str, error: type[Exception] = UnsafeFileError):
    """(c) Import the object a dotted name names, only when ``allowed`` has the name.

    Args:
        name: ``package.module.attribute``.
        allowed: The names that may be imported.
        key: Where the name was read (named in the error).
        hint: How to allow another name (ends the error).
        error: The error type raised.

    Raises:
        error: the name is not allowed (nothing was imported).
    """
    allowed = sorted(set(allowed))
    if not isinstance(name, str) or name not in allowed:
        raise error(f"{key}={name!r} is not an allowed name (nothing was imported); allowed: {allowed}. {hint}")
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


# ---------------------------------------------------------------------------------------- (a) + (b) one tree
def unsafe_nodes(
    tree: Any, allowed: AllowList | Iterable[str], key: str = "", resolved: Mapping[str, str] | None = None
) -> list[str]:
    """What in ``tree`` could make ``instantiate`` (or our code) import or call anything not allowed.

    Args:
        tree: Plain data read from a file, e.g. a model config as stored in a checkpoint.
        allowed: An :class:`AllowList` (names by position), or dotted names allowed at any position.
        key: The dotted key of ``tree`` itself, to name the offending keys by.
        resolved: Keys whose values the code imports → what to call them (default: ``{"_target_": "target"}``).

    Returns:
        One line per problem (empty when the tree is safe): a resolved name not allowed at its position, a
        ``${...}`` interpolation (it would be resolved, and could build nodes this check never saw), or a key or
        value that is not plain data.
    """
    rules = allowed if isinstance(allowed, AllowList) else AllowList(anywhere=frozenset(allowed))
    resolved = dict(resolved or {TARGET_KEY: "target"})
    problems: list[str] = []

    def check(node: Any, name: str, position: str) -> None:
        if isinstance(node, dict):
            for child, value in node.items():
                child_name = f"{name}.{child}" if name else str(child)
                child_position = f"{position}.{child}" if position else str(child)
                if not isinstance(child, str):
                    problems.append(f"{child_name}: the key {child!r} is not a string")
                elif child in resolved:
                    problem = rules.problem(child_position, value, child_name, resolved[child], key)
                    problems.extend([problem] if problem else [])
                else:
                    check(value, child_name, child_position)
        elif isinstance(node, list | tuple):
            for index, value in enumerate(node):
                check(value, f"{name}[{index}]", f"{position}{LIST_ITEM}")
        elif not isinstance(node, PLAIN_TYPES):
            problems.append(f"{name} is a {type(node).__name__}, not plain data")
        elif isinstance(node, str) and "${" in node:
            problems.append(f"{name}={node!r} is an interpolation (a stored config must hold plain values)")

    check(tree, key, "")
    return problems


DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
IMPORTING_KEYS = frozenset(
    {"kind", "backend", "act_layer", "mlp_layer", "class"}
)  # config keys whose dotted value is imported


def override_problem(key: str, value: str, where: str, allowed_targets: Collection[str] = frozenset()) -> str | None:
    """(a), (b), (c) The line refusing a config override read from a file (a row of a sweep's ``grid.csv``), or None.

    Such an override is plain data: its key sets no ``_...`` key Hydra acts on (a ``_target_`` only to one of
    ``allowed_targets``, those ``conf/`` names) and no ``hydra`` setting, and its value is no ``${...}``
    interpolation, nor a dotted name at a key whose dotted value is imported (``loss.kind=pkg.module``,
    ``dataset.backend=pkg.Reader``: :data:`IMPORTING_KEYS`). Set those on the command line, where you write them
    yourself.
    """
    name = key.lstrip("+~")
    parts = re.split(r"[./]", name)
    if parts[-1] == TARGET_KEY and not any(p.startswith("_") for p in parts[:-1]) and parts[0] != "hydra":
        if value.strip() in allowed_targets:
            return None
        return f"{where}: {key}={value!r} names code that no config in conf/ names (set it on the command line)"
    if any(part.startswith("_") for part in parts) or parts[0] == "hydra":
        return f"{where}: the key {key!r} could name code or change Hydra (set it on the command line)"
    if "${" in value:
        return f"{where}: {key}={value!r} is an interpolation (a file's overrides must hold plain values)"
    if parts[-1] in IMPORTING_KEYS and DOTTED_NAME.match(value.strip()):
        return f"{where}: {key}={value!r} is a dotted name that could name code (set it on the command line)"
    return None


# ---------------------------------------------------------------------------------------------- (e) offline
def offline_tree(tree: Any, key: str = "") -> tuple[Any, list[str]]:
    """(e) A copy of a stored tree that fetches and opens nothing, and the lines refusing what cannot be made so.

    In every node: ``pretrained`` becomes false and ``weights_path`` null (the checkpoint's own weights replace
    any starting point). A URL-ish key (:data:`URL_KEYS`) with a value, or a string naming a place to fetch from
    (``https://...``, ``hf-hub:...``, ``local-dir:...``), is a problem.

    Args:
        tree: Plain data (checked by :func:`unsafe_nodes` first).
        key: The dotted key of ``tree``, to name the offending keys by.
    """
    problems: list[str] = []

    def copy(node: Any, name: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for child, value in node.items():
                child_name = f"{name}.{child}" if name else str(child)
                if child in FORCED:
                    out[child] = FORCED[child]
                    continue
                if child in URL_KEYS and value not in (None, {}, ""):
                    problems.append(f"{child_name}={value!r} could fetch or open a file (refused in a stored config)")
                out[child] = copy(value, child_name)
            return out
        if isinstance(node, list | tuple):
            return [copy(value, f"{name}[{index}]") for index, value in enumerate(node)]
        if isinstance(node, str) and URL_VALUE.match(node):
            problems.append(f"{name}={node!r} names a place to fetch from (refused in a stored config)")
        return node

    return copy(tree, key), problems


# -------------------------------------------------------------------------------------------- (d) path names
def plain_name(value: Any, key: str, source: str | Path | None = None) -> str:
    """(d) ``value`` when it is one plain name that stays inside the folder it is joined to.

    Args:
        value: A name read from a file (a fold name, a trial folder name, ...).
        key: Where it was read, e.g. ``folds[0].name``.
        source: The file it was read from (named in the error).

    Raises:
        UnsafeFileError: not a string, empty, ``.`` or ``..``, absolute, or holding a path separator, a NUL or
            another control character (nothing was written or read there).
    """
    separators = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}
    bad = (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or any(s in value for s in separators)
        or any(ord(c) < 32 for c in value)
        or Path(value).is_absolute()
    )
    if bad:
        where = f"{source}: " if source else ""
        raise UnsafeFileError(
            f"{where}{key}={value!r} is not a plain name: it is used as a file or folder name, so it must be one "
            "name without '/', '\\' or control characters, and not '', '.' or '..' (nothing was written there). "
            "Fix the file, or make it again"
        )
    return value


def inside(parent: str | Path, path: str | Path) -> bool:
    """(d) Whether ``path`` (resolved, links followed) lies inside the folder ``parent``."""
    root = Path(parent).resolve()
    return Path(path).resolve().is_relative_to(root)
