"""Every ``_target_`` node's keys bound to its target's signature, before anything is built or read.

Hydra passes a node's keys to its ``_target_`` as keyword arguments, but only when it calls it: a ``_partial_``
node (a MIL model, the data module, a loss function, an optimizer) is called by our code much later, after
the tiles and bags are made, so a misspelt key (``model.hiden_width``) would fail there with a bare
``TypeError``. :func:`check_signatures` finds every node with a ``_target_`` in a composed config (nested
nodes, lists and ``_recursive_: false`` subtrees too; not the ``hydra`` settings), imports its target without
calling it, and binds the node's keys with :meth:`inspect.Signature.bind_partial` (the later call of a
partial supplies the rest). A key the target does not take is a :class:`~src.errors.ConfigError` naming the
key, the target, the nearest accepted name and every accepted name.

A composed config is the user's own (conf/ and the command line; a sweep's grid file may only name targets
that conf/ names, see :func:`src.trust.override_problem`): its targets are the code the run instantiates
anyway. Targets are imported here, at call time, so importing this module costs nothing.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.trust import TARGET_KEY

#: Keys Hydra reads itself: they are not arguments of the target (``_args_`` are its positional arguments).
HYDRA_KEYS = frozenset({TARGET_KEY, "_partial_", "_recursive_", "_convert_", "_args_"})
#: A target that hands its ``**kwargs`` on (e.g. to timm) may carry this attribute: a function of the node that
#: returns every name the target takes, or None when it cannot tell (then every name is taken).
ACCEPTED_KEYWORDS = "accepted_keywords"
#: Top-level keys that are Hydra's own settings (launcher, sweeper, ...), not nodes the run builds.
SKIPPED_ROOTS = frozenset({"hydra"})


def check_signatures(cfg: DictConfig | Mapping, within: Iterable[str] | None = None) -> None:
    """Bind every ``_target_`` node's keys to its target's signature (nothing is called).

    Args:
        cfg: A composed config.
        within: Top-level keys whose subtrees are checked (e.g. ``("project",)`` for extraction, whose other
            nodes are only built by training); None = every key but ``hydra``.

    Raises:
        ConfigError: a key a target does not take (every such key of the config, each with its target, the
            nearest accepted name and the accepted names), or a ``_target_`` that cannot be imported.
    """
    tree = (
        cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False)) if isinstance(cfg, DictConfig) else dict(cfg)
    )
    roots = set(tree) - SKIPPED_ROOTS if within is None else set(within) & set(tree)
    problems = [
        problem
        for root in sorted(roots, key=list(tree).index)
        for key, node in target_nodes(tree[root], root)
        for problem in node_problems(key, node)
    ]
    if problems:
        lines = "\n  - ".join(problems)
        raise ConfigError(f"a config node has a key its _target_ does not take (fix or remove the key):\n  - {lines}")


def target_nodes(tree: Any, key: str = "") -> Iterator[tuple[str, dict]]:
    """``(dotted key, node)`` of every dict in ``tree`` with a string ``_target_``, outermost first.

    Interpolations (``encoder: ${encoder}``) are not followed: the node they name is checked where it stands.
    """
    if isinstance(tree, dict):
        if isinstance(tree.get(TARGET_KEY), str) and "${" not in tree[TARGET_KEY]:
            yield key, tree
        for child, value in tree.items():
            if child != TARGET_KEY:
                yield from target_nodes(value, f"{key}.{child}" if key else str(child))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from target_nodes(value, f"{key}[{index}]")


def node_problems(key: str, node: Mapping[str, Any]) -> list[str]:
    """The lines refusing the keys of one ``_target_`` node (shown as ``key``) that its target does not take."""
    target = node[TARGET_KEY]
    try:
        obj = locate(target)
    except (ImportError, AttributeError) as error:
        return [f"{key}._target_={target!r} cannot be imported: {type(error).__name__}: {error}"]
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # no signature to read (e.g. some builtins): nothing to check
        return []
    arguments = [name for name in node if name not in HYDRA_KEYS]
    names = keyword_names(obj, signature)
    if names is None and callable(getattr(obj, ACCEPTED_KEYWORDS, None)):  # it says where its **kwargs go
        names = getattr(obj, ACCEPTED_KEYWORDS)(node)
    if names is None:  # it takes any keyword
        return []
    unknown = [name for name in arguments if name not in names]
    if unknown:
        return [
            f"{key}.{name}: {target} takes no argument {name!r}{suggestion(name, names)}; it takes {', '.join(names)}"
            for name in unknown
        ]
    try:
        signature.bind_partial(*(node.get("_args_") or []), **dict.fromkeys(arguments))
    except TypeError as error:  # e.g. more _args_ than positional parameters, or one given twice
        return [f"{key}: {target} cannot take these arguments ({error}); it takes {', '.join(names or [])}"]
    return []


def keyword_names(target: Any, signature: inspect.Signature | None = None) -> list[str] | None:
    """The names a node's keys may take (keyword parameters, in order), or None when it takes any keyword.

    A class whose ``__init__`` only hands its ``**kwargs`` on to ``super().__init__`` (``Macenko(alpha, ...,
    **kwargs)``) takes its parent's names too; any other ``**kwargs`` (passed to timm, to Lightning's DDP, to
    W&B) takes every name.
    """
    signature = signature or inspect.signature(target)
    names = [name for name, parameter in signature.parameters.items() if accepted(parameter)]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return names
    parent = kwargs_parent(target) if inspect.isclass(target) else None
    inherited = keyword_names(parent) if parent is not None else None
    return None if inherited is None else [*names, *(name for name in inherited if name not in names)]


def kwargs_parent(cls: type) -> type | None:
    """The class whose ``__init__`` receives all of ``cls.__init__``'s ``**kwargs``, or None when they go elsewhere.

    That is the next class in the method resolution order when the ``**kwargs`` name is used once only, in
    ``super().__init__(..., **kwargs)`` (read from the source; nothing is called).
    """
    owner = next((c for c in cls.__mro__ if "__init__" in vars(c)), None)
    if owner is None or owner is object:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(vars(owner)["__init__"])))
    except (OSError, TypeError, SyntaxError):  # no source (a C extension, an interactive class)
        return None
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef) or function.args.kwarg is None:
        return None
    kwargs = function.args.kwarg.arg
    uses = [n for n in ast.walk(function) if isinstance(n, ast.Name) and n.id == kwargs]
    forwarded = [
        call
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "__init__"
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.func.value.func, ast.Name)
        and call.func.value.func.id == "super"
        and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwargs for k in call.keywords)
    ]
    if len(uses) != 1 or len(forwarded) != 1:
        return None
    mro = cls.__mro__
    parent = mro[mro.index(owner) + 1]
    return None if parent is object else parent


def accepted(parameter: inspect.Parameter | None) -> bool:
    """Whether a parameter can be given by keyword (a node's key)."""
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return parameter is not None and parameter.kind in keyword


def suggestion(name: str, names: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the accepted name closest to ``name``, or nothing when none is close."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def locate(path: str) -> Any:
    """The object at a dotted path (``torch.optim.Adam``, ``pkg.module.Class.method``), importing its module.

    Raises:
        ImportError: no module of the path can be imported.
        AttributeError: the module has no such attribute.
    """
    parts = str(path).split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    return importlib.import_module(str(path))
