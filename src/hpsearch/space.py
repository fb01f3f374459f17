"""Search spaces: Hydra's sweep grammar → Optuna distributions, and conditional entries.

A space is a mapping in the config, ``hparams_search.space`` (one YAML per space in
``conf/hparams_search/``), named with Slideflow's hyper-parameter names::

    learning_rate: {key: optimizer.lr, values: "tag(log, interval(1e-5, 1e-3))"}
    hidden_layer_width: {key: model.hidden_layer_width, values: "choice(64, 128, 256, 512)",
                         when: "model.hidden_layers > 0"}

``values`` uses Hydra's sweep grammar: ``choice(...)``, ``range(a, b[, step])``, ``interval(a, b)``,
``int(interval(a, b))``, ``tag(log, ...)``. ``when`` makes an entry conditional on the value of an entry
before it (or of a key fixed on the command line): ``<key> <op> <number>`` with ``op`` one of
``> >= < <= == !=``; an inactive entry is not suggested, so the job keeps the config's value.

**``range(a, b)`` excludes ``b``**, as Python's ``range`` and Hydra's grid sweeps: ``range(1, 4)`` is 1, 2, 3
under TPE, random and grid samplers alike (the released plugin's TPE also drew 4). ``interval(a, b)`` is
closed: ``int(interval(1, 4))`` may give 4.

Switch an entry off with ``hparams_search.space.<name>=null``; change it with
``hparams_search.space.<name>.values='choice(16,32)'``; a key fixed on the command line
(``optimizer.lr=1e-4``) is not searched.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, RangeSweep
from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    DiscreteUniformDistribution,
    IntUniformDistribution,
)
from optuna.trial import Trial

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_WHEN = re.compile(r"^\s*([\w.+]+)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


class SearchSpaceError(ValueError):
    """A search-space entry that cannot be read (names the entry and what is allowed)."""


def distribution(key: str, values: str) -> BaseDistribution:
    """The Optuna distribution of ``key=values`` in Hydra's sweep grammar, ``range`` with its stop excluded.

    Raises:
        SearchSpaceError: ``values`` is not a sweep (``choice``, ``range``, ``interval``) or cannot be parsed.
    """
    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={values}"])
    except Exception as error:
        raise SearchSpaceError(f"{key}: cannot parse '{values}' ({error})") from error
    return override_distribution(override, values)


def override_distribution(override: Override, values: str = "") -> BaseDistribution:
    """The Optuna distribution of a parsed sweep override (``range`` with its stop excluded).

    Raises:
        SearchSpaceError: the override is not a sweep.
    """
    key = override.get_key_element()
    if not override.is_sweep_override():
        raise SearchSpaceError(
            f"{key}: '{values}' is a single value, not a sweep: use choice(...), range(a, b) or interval(a, b)"
        )
    value = override.value()
    if override.is_range_sweep() and isinstance(value, RangeSweep) and not value.shuffle:
        assert value.start is not None and value.stop is not None  # the parser sets both
        return range_distribution(key, value.start, value.stop, value.step)
    return create_optuna_distribution_from_override(override)


def range_distribution(key: str, start: float, stop: float, step: float) -> BaseDistribution:
    """``range(start, stop, step)`` as Python's range: the values ``start + i·step < stop``."""
    n = int((stop - start) // step) if step > 0 else 0
    if (stop - start) / step > n + 1e-9:  # stop not on the lattice: the last value is still < stop
        n += 1
    if n < 1:
        raise SearchSpaceError(f"{key}: range({start}, {stop}, {step}) is empty (the stop is excluded)")
    last = start + (n - 1) * step
    if all(isinstance(v, int) for v in (start, stop, step)):
        return IntUniformDistribution(int(start), int(last), step=int(step))
    return DiscreteUniformDistribution(float(start), float(last), float(step))


def grid_choices(dist: BaseDistribution) -> list[Any]:
    """Every value of a discrete distribution, both ends included (the grid sampler's list)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntUniformDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, DiscreteUniformDistribution):
        n = round((dist.high - dist.low) / dist.q)
        return [dist.low + i * dist.q for i in range(n + 1)]
    raise SearchSpaceError(f"a grid sampler needs choice(...) or range(...), not {type(dist).__name__}")


def space_entries(cfg: DictConfig | Mapping) -> dict[str, dict[str, Any]]:
    """The active entries of ``hparams_search.space`` (``null`` ones dropped), checked.

    Raises:
        SearchSpaceError: an entry without ``key`` and ``values``, or with a bad ``when``.
    """
    search = OmegaConf.select(cfg, "hparams_search.space") if isinstance(cfg, DictConfig) else None
    space = OmegaConf.to_container(search, resolve=True) if search is not None else {}
    if not isinstance(space, dict):
        raise SearchSpaceError(f"hparams_search.space must map entry names to entries, got {space!r}")
    entries = {}
    for name, entry in space.items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or "key" not in entry or "values" not in entry:
            raise SearchSpaceError(
                f"hparams_search.space.{name!s}: needs 'key' (the config key) and 'values' (a sweep), got {entry!r}"
            )
        if entry.get("when") and not _WHEN.match(str(entry["when"])):
            raise SearchSpaceError(
                f"hparams_search.space.{name!s}.when='{entry['when']}': write '<key> <op> <number>' "
                f"with op one of {' '.join(_OPS)}"
            )
        entries[str(name)] = dict(entry)
    return entries


def condition_holds(when: str | None, known: Mapping[str, Any]) -> bool:
    """Whether ``when`` (``'model.hidden_layers > 0'``) holds for the values in ``known``.

    A condition on a key without a known value is false (the entry it guards stays inactive).
    """
    if not when:
        return True
    match = _WHEN.match(str(when))
    assert match is not None, f"when='{when}' was not checked by space_entries"
    key, op, number = match.groups()
    if key not in known:
        return False
    try:
        return bool(_OPS[op](float(known[key]), float(number)))
    except (TypeError, ValueError):
        return bool(_OPS[op](str(known[key]), number))


def suggest_space(cfg: DictConfig, trial: Trial) -> None:
    """Suggest every active entry of ``hparams_search.space`` in order (the sweeper's ``custom_search_space``).

    Keys fixed on the command line (the trial's user attributes) are not searched; an entry whose ``when``
    does not hold is skipped.
    """
    known: dict[str, Any] = {**trial.user_attrs, **trial.params}
    for entry in space_entries(cfg).values():
        key = str(entry["key"])
        if key in trial.user_attrs or key in trial.params:
            continue
        if not condition_holds(entry.get("when"), known):
            continue
        known[key] = trial._suggest(key, distribution(key, str(entry["values"])))
