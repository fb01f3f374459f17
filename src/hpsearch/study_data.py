"""What the study sweeper reads back from an Optuna study, as plain data checked against a schema.

A study (``study.db``) is a file colleagues share and continue, so every value the sweeper, or Optuna on its
behalf, reads from it is checked before it is used, and none decides code or a path:

- our trial user attributes (``workbench:pid``, ``host``, ``heartbeat``, ``interrupted``, ``reason``, ``mean``,
  ``sd``, ``folds``, ``seconds``, ``run_folder``, ``job_dir``) have a type each (:data:`SCHEMA`);
- the system attributes Optuna reads while it samples: ``fixed_params`` (queued parameters: each within the
  distribution the sweep searches), ``grid_id`` and ``search_space`` (the grid sampler), and the CMA-ES
  sampler's state, which Optuna unpickles: it may hold only the ``cmaes`` optimizer and numpy arrays
  (:func:`check_cma_state`; anything else is refused before Optuna reads it);
- a value the storage cannot decode (not JSON) is named by its trial and attribute (:func:`read_trials`);
- ``job_dir`` is a folder *inside* the sweep folder, or nothing (:func:`job_folder`).

A value that breaks these rules stops the sweep with :class:`StudyDataError`, naming the study, the trial
number, the attribute and what was expected, before the next trial starts. We chose an error over treating the
trial as failed: these values decide whether a trial counts towards ``n_trials``, whether its process is still
alive, which parameters are tried again and which folder holds the best trial; guessing would silently change
what the study runs, and a damaged study is continued safely only by someone who looked at it (or by a new
``hparams_search.study_name``).
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

ATTR = "workbench:"  # prefix of our trial user attributes (fixed overrides use the bare key)
FIX = "how to fix: restore the study from a copy, or start a new one with hparams_search.study_name=<new name>"
CMA_PREFIXES = ("cma:", "sepcma:")
CMA_CLASSES = {  # what Optuna 2.10's CmaEsSampler pickles into a trial: the cmaes optimizer and numpy arrays
    ("cmaes._cma", "CMA"),
    ("cmaes._sepcma", "SepCMA"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class StudyDataError(ValueError):
    """A value in a study that does not fit its schema: names the study, trial, attribute and what was expected."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _folds(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and (v is None or _number(v)) for k, v in value.items())


SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "pid": (_optional(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0), "a process id (int)"),
    "host": (_optional(lambda v: isinstance(v, str)), "a host name (text)"),
    "heartbeat": (_optional(_number), "a time in seconds since the epoch (number)"),
    "interrupted": (_optional(lambda v: isinstance(v, bool)), "true or false"),
    "reason": (_optional(lambda v: isinstance(v, str)), "text"),
    "mean": (_optional(_number), "a finite number"),
    "sd": (_optional(_number), "a finite number"),
    "seconds": (_optional(_number), "a finite number"),
    "folds": (_optional(_folds), "a mapping of fold name to a finite number or null"),
    "run_folder": (_optional(lambda v: isinstance(v, str)), "a folder (text)"),
    "job_dir": (_optional(lambda v: isinstance(v, str)), "a folder (text)"),
}


@dataclass(frozen=True)
class TrialAttrs:
    """The checked ``workbench:`` user attributes of one trial (None where the trial has none)."""

    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None
    interrupted: bool = False
    reason: str | None = None
    mean: float | None = None
    sd: float | None = None
    seconds: float | None = None
    folds: dict[str, float | None] = field(default_factory=dict)
    run_folder: str | None = None
    job_dir: str | None = None


def study_label(study: optuna.Study, storage: str) -> str:
    """``study 'name' (storage)``, how messages name a study."""
    return f"study '{study.study_name}' ({storage})"


def trial_attrs(label: str, trial: FrozenTrial) -> TrialAttrs:
    """The trial's ``workbench:`` user attributes, each checked against :data:`SCHEMA` (unknown ones are ignored).

    Raises:
        StudyDataError: an attribute of the wrong type (names the study, trial, attribute, value, expectation).
    """
    values: dict[str, Any] = {}
    for name, (valid, expected) in SCHEMA.items():
        value = trial.user_attrs.get(ATTR + name)
        if not valid(value):
            raise _error(label, trial, f"user attribute '{ATTR}{name}'", value, expected)
        if value is not None:
            values[name] = value
    return TrialAttrs(**values)


def check_trial(label: str, trial: FrozenTrial, searched: Mapping[str, BaseDistribution]) -> TrialAttrs:
    """Check every value of ``trial`` that the sweeper or Optuna's samplers read; returns its attributes.

    Args:
        label: The study, as :func:`study_label` names it.
        trial: A trial of the study.
        searched: The distributions this sweep searches (queued ``fixed_params`` must fall inside them).

    Raises:
        StudyDataError: a value that does not fit (see the module docstring).
    """
    attrs = trial_attrs(label, trial)
    system = trial.system_attrs
    fixed = system.get("fixed_params")
    if fixed is not None:
        if not isinstance(fixed, dict) or not all(isinstance(k, str) for k in fixed):
            raise _error(label, trial, "system attribute 'fixed_params'", fixed, "a mapping of parameter to value")
        for name, value in fixed.items():
            if name in searched and not _inside(searched[name], value):
                raise _error(
                    label, trial, f"system attribute 'fixed_params.{name}'", value, f"a value of {searched[name]}"
                )
    if "grid_id" in system and not (isinstance(system["grid_id"], int) and not isinstance(system["grid_id"], bool)):
        raise _error(label, trial, "system attribute 'grid_id'", system["grid_id"], "a grid index (int)")
    space = system.get("search_space")
    if space is not None and not (isinstance(space, dict) and all(isinstance(v, list) for v in space.values())):
        raise _error(label, trial, "system attribute 'search_space'", space, "a mapping of parameter to a list")
    if trial.state == TrialState.WAITING:  # a queued trial's user attributes become the next trial's fixed keys
        for key, value in trial.user_attrs.items():
            if not key.startswith(ATTR) and not isinstance(value, str | int | float | bool):
                raise _error(label, trial, f"user attribute '{key}'", value, "a fixed override value (text)")
    check_cma_state(label, trial)
    return attrs


def check_cma_state(label: str, trial: FrozenTrial) -> None:
    """Refuse a CMA-ES state that Optuna's ``CmaEsSampler`` would unpickle unless it holds only the optimizer.

    The state is checked with an unpickler that resolves only :data:`CMA_CLASSES`; anything else it names (a
    function to call, another class) stops here, before Optuna's own ``pickle.loads`` of the same text.

    Raises:
        StudyDataError: a state that is not hexadecimal text, or names anything but the optimizer and arrays.
    """
    for prefix in CMA_PREFIXES:
        parts = {k: v for k, v in trial.system_attrs.items() if k.startswith(prefix + "optimizer")}
        if not parts:
            continue
        attribute = f"system attribute '{prefix}optimizer'"
        if not all(isinstance(v, str) for v in parts.values()):
            raise _error(label, trial, attribute, parts, "hexadecimal text")
        text = parts.get(prefix + "optimizer") or "".join(parts[k] for k in sorted(parts, key=_part_number))
        try:
            state = _CmaUnpickler(io.BytesIO(bytes.fromhex(text))).load()
        except (pickle.UnpicklingError, ValueError, EOFError, TypeError, AttributeError, ImportError) as error:
            raise _error(label, trial, attribute, f"{text[:40]}...", f"a pickled cmaes optimizer ({error})") from error
        if type(state).__name__ not in ("CMA", "SepCMA"):
            raise _error(label, trial, attribute, type(state).__name__, "a pickled cmaes optimizer")


def read_trials(study: optuna.Study, label: str, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """``study.get_trials``; a value the storage cannot decode is named by its trial and attribute.

    Raises:
        StudyDataError: the storage holds an attribute or parameter distribution that is not valid JSON.
    """
    try:
        return study.get_trials(deepcopy=False, states=states)
    except (ValueError, LookupError, TypeError) as error:  # JSONDecodeError, an unknown enum value, a missing key
        raise StudyDataError(f"{label} cannot be read: {_undecodable(study) or error}; {FIX}") from error


def job_folder(sweep_dir: Path, job_dir: str | None) -> Path | None:
    """A trial's job folder inside ``sweep_dir``, or None when ``job_dir`` does not name one there.

    ``job_dir`` is relative to the sweep folder; an absolute one (written before, or by a copy of the sweep
    folder elsewhere) is taken relative to it when inside, else by its last name. Every part must be a plain name
    (no ``..``), and the folder must resolve inside ``sweep_dir`` (no link out of it).
    """
    if not job_dir:
        return None
    path = Path(job_dir)
    if path.is_absolute():
        try:
            path = path.relative_to(sweep_dir)
        except ValueError:
            path = Path(path.name)
    if not path.parts or any(part in ("", ".", "..") or "\\" in part for part in path.parts):
        return None
    folder = sweep_dir / path
    try:
        folder.resolve().relative_to(sweep_dir.resolve())
    except ValueError:
        return None
    return folder


class _CmaUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CMA_CLASSES:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        return super().find_class(module, name)


def _part_number(key: str) -> int:
    tail = key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _inside(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _error(label: str, trial: FrozenTrial, attribute: str, value: Any, expected: str) -> StudyDataError:
    return StudyDataError(
        f"{label}: trial {trial.number} has {attribute} = {_short(value)}, expected {expected}; {FIX}"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _undecodable(study: optuna.Study) -> str | None:
    """Which attribute or parameter of which trial is not JSON (RDB storages), or None when none is found."""
    backend = getattr(study._storage, "_backend", study._storage)
    engine = getattr(backend, "engine", None)
    if engine is None:
        return None
    from sqlalchemy import text

    queries = {
        "user attribute": "SELECT t.number, a.key, a.value_json FROM trial_user_attributes a",
        "system attribute": "SELECT t.number, a.key, a.value_json FROM trial_system_attributes a",
        "parameter": "SELECT t.number, a.param_name, a.distribution_json FROM trial_params a",
    }
    with engine.connect() as connection:
        for field, select in queries.items():
            rows = connection.execute(
                text(f"{select} JOIN trials t ON a.trial_id = t.trial_id WHERE t.study_id = :study ORDER BY t.number"),
                {"study": study._study_id},
            )
            for number, key, raw in rows:
                try:
                    json_to_distribution(raw) if field == "parameter" else json.loads(raw)
                except (ValueError, KeyError, TypeError):
                    expected = "a distribution (JSON)" if field == "parameter" else "a JSON value"
                    return f"trial {number} has {field} '{key}' = {_short(raw)}, expected {expected}"
    return None
