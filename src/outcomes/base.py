"""The :class:`Outcome` base class and the look-up of kinds by name."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, ClassVar

from src.errors import ConfigError

LEVELS = ("tile", "slide", "patient")  # prediction levels: tiles, mean per slide, mean per patient
_NOT_KINDS = frozenset({"base", "layout"})


@dataclass
class Outcome:
    """One outcome column, of one kind.

    Attributes:
        name: Annotation column.
        classes: Sorted class names (categorical kinds; a label is its index here).
        event: Event column (time-to-event kinds).
    """

    kind: ClassVar[str] = ""
    #: Metric names at each level, e.g. ``("auroc", "accuracy")`` -> ``val/slide_auroc/<outcome>``.
    metric_names: ClassVar[tuple[str, ...]] = ()
    #: ``training_balance`` / ``validation_balance`` strategies this kind accepts (``auto`` always).
    balance_strategies: ClassVar[tuple[str, ...]] = ("tile", "slide", "patient", "none")
    #: What ``auto`` means for this kind.
    default_balance: ClassVar[str] = "patient"
    #: Slots this outcome takes in a slide's target vector.
    n_targets: ClassVar[int] = 1

    name: str
    classes: list[str] = field(default_factory=list)
    event: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (saved in params.json and checkpoints)."""
        return {"name": self.name, "kind": self.kind, "classes": list(self.classes), "event": self.event}


def available_kinds() -> list[str]:
    """Names of the kinds shipped in this package (one module each)."""
    package = importlib.import_module(__package__)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in _NOT_KINDS)


def outcome_kind(kind: str) -> type[Outcome]:
    """The :class:`Outcome` subclass of ``kind``.

    Args:
        kind: A shipped kind (``categorical``, ``linear``, ``cox``, ...: a module of this package), or the
            dotted path of a module elsewhere that defines one subclass whose ``kind`` is its last name.

    Raises:
        ConfigError: no such kind (the message lists the shipped ones).
    """
    module_name = kind if "." in str(kind) else f"{__package__}.{kind}"
    short = str(kind).rsplit(".", 1)[-1]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        module = None
    for value in vars(module).values() if module is not None else ():
        if isinstance(value, type) and issubclass(value, Outcome) and value.kind == short:
            return value
    raise ConfigError(f"Unknown outcome kind {kind!r} (loss.kind); choose one of {available_kinds()}")


def outcome_from_dict(data: dict[str, Any]) -> Outcome:
    """Rebuild an outcome from :meth:`Outcome.to_dict` output."""
    cls = outcome_kind(data["kind"])
    return cls(name=data["name"], classes=list(data.get("classes") or []), event=data.get("event"))
