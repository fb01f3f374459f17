"""The :class:`Outcome` base class (what every kind shares) and the look-up of kinds by name."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Sampler

from src.errors import AnnotationError, ConfigError, UnsafeFileError
from src.evaluation.heatmaps import HeatmapLayer
from src.evaluation.predictions import LEVELS
from src.samplers.balance import tile_weights, weighted_sampler
from src.trust import name_problem

_NOT_KINDS = frozenset({"base", "layout", "checks"})


@dataclass
class Outcome:
    """One outcome column, of one kind; subclasses (one module each) fill in what differs.

    Attributes:
        name: Annotation column.
        classes: Sorted class names (categorical kinds; a label is its index here).
        event: Event column (time-to-event kinds).
    """

    kind: ClassVar[str] = ""
    #: Metric names at each level, e.g. ``("auroc", "accuracy")`` -> ``val/slide_auroc/<outcome>``.
    metric_names: ClassVar[tuple[str, ...]] = ()
    #: Bounds of each metric, for intervals that respect them (``src.evaluation.results_log.bounded_interval``).
    metric_bounds: ClassVar[dict[str, tuple[float, float]]] = {}
    #: ``training_balance`` / ``validation_balance`` strategies this kind accepts besides ``auto``.
    balance_strategies: ClassVar[tuple[str, ...]] = ("tile", "slide", "patient", "none")
    #: What ``auto`` means for this kind.
    default_balance: ClassVar[str] = "patient"
    #: Slots this outcome takes in a slide's target vector.
    n_targets: ClassVar[int] = 1
    #: Whether it can share a model with other outcomes.
    combinable: ClassVar[bool] = True
    #: Whether it reads an event column (``event_header``).
    needs_event: ClassVar[bool] = False
    #: The loss ``fn`` used when ``loss.per_outcome.<name>`` gives only this kind.
    default_loss: ClassVar[dict[str, Any]] = {}

    name: str
    classes: list[str] = field(default_factory=list)
    event: str | None = None

    # ------------------------------------------------------------------ labels
    @classmethod
    def from_column(cls, table: pd.DataFrame, name: str, event: str | None = None) -> Outcome:
        """Check that column ``name`` of ``table`` (used slides, no blanks) fits this kind; describe it.

        Raises:
            AnnotationError: values that do not fit the kind, naming the column, a slide and its value.
        """
        return cls(name)

    @property
    def n_outputs(self) -> int:
        """Width of this outcome's head."""
        return 1

    @property
    def columns(self) -> list[str]:
        """Annotation columns this outcome reads."""
        return [self.name]

    def encode(self, table: pd.DataFrame) -> np.ndarray:
        """(n_rows, n_targets) float32 targets of the rows of ``table``."""
        return table[self.name].astype(float).to_numpy(np.float32)[:, None]

    def label(self, part: np.ndarray) -> Any:
        """The plain label of one slide from its (n_targets,) target part (Slideflow's ``labels[slide]``)."""
        return float(part[0])

    def strata(self) -> list[str]:
        """Annotation columns the folds are stratified on for this outcome."""
        return []

    @classmethod
    def kind_spec(cls) -> str:
        """How the config names this kind: ``cox`` for a shipped kind, else its module's dotted path."""
        shipped = cls.__module__ == f"{__package__}.{cls.kind}"
        return cls.kind if shipped else cls.__module__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (saved in params.json and checkpoints)."""
        return {"name": self.name, "kind": self.kind_spec(), "classes": list(self.classes), "event": self.event}

    # ----------------------------------------------------------------- sampling
    @classmethod
    def resolve_balance(cls, strategy: str, key: str = "training_balance") -> str:
        """``auto`` → this kind's default; any other strategy must be one this kind accepts.

        Raises:
            ConfigError: naming ``key``, the value and the strategies allowed for this kind.
        """
        strategy = str(getattr(strategy, "value", strategy))
        if strategy == "auto":
            return cls.default_balance
        if strategy not in cls.balance_strategies:
            raise ConfigError(
                f"{key}={strategy!r} does not fit a {cls.kind} outcome; choose one of "
                f"{['auto', *cls.balance_strategies]}"
            )
        return strategy

    def categories(self, part: np.ndarray) -> np.ndarray | None:
        """Per-slide category for ``category`` balancing (None: this kind has none)."""
        return None

    def tile_weights(
        self, strategy: str, slide_idx: np.ndarray, slide_patients: Sequence[str], part: np.ndarray, key: str
    ) -> np.ndarray | None:
        """Per-tile weights of a balance strategy (``validation_balance``; None: unweighted)."""
        return tile_weights(self.resolve_balance(strategy, key), slide_idx, slide_patients, self.categories(part))

    def sampler(
        self,
        strategy: str,
        slide_idx: np.ndarray,
        slide_patients: Sequence[str],
        part: np.ndarray,
        batch_size: int,
        seed: int,
        loss_cfg: Mapping[str, Any],
    ) -> Sampler[int] | None:
        """The training sampler of ``training_balance`` (None: plain shuffling)."""
        weights = self.tile_weights(strategy, slide_idx, slide_patients, part, "training_balance")
        return weighted_sampler(weights, seed)

    def check_training(self, part: np.ndarray, where: str) -> None:
        """Raise when the training slides' targets cannot train this outcome (e.g. no event)."""

    def check_validation(self, part: np.ndarray, where: str) -> None:
        """Warn when the validation slides' targets leave a metric undefined."""

    # --------------------------------------------------------------- the head
    def fit_head(self, loss_fn: Any, part: np.ndarray) -> tuple[float, float]:
        """Fit the loss on the training slides' targets; returns the head's (output mean, output scale)."""
        return 0.0, 1.0

    def train_metrics(self, output: torch.Tensor, part: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cheap metrics logged per training batch, e.g. ``{"accuracy": ...}``."""
        return {}

    def predict(self, output: torch.Tensor) -> np.ndarray:
        """Head output → prediction (probabilities, values, risks) as a NumPy array."""
        return output.float().numpy()

    # --------------------------------------------------------------- evaluation
    def output_columns(self) -> list[str]:
        """Prediction columns of this outcome (averaged when reducing to slides and patients)."""
        return [f"{self.name}-y_pred"]

    def truth_columns(self) -> list[str]:
        """Ground-truth columns (constant within a slide and a patient)."""
        return [f"{self.name}-y_true"]

    def tile_columns(self, output: torch.Tensor, part: np.ndarray) -> dict[str, np.ndarray]:
        """Tile-table columns from head outputs (n, width) and target parts (n, n_targets)."""
        return {f"{self.name}-y_true": part[:, 0], f"{self.name}-y_pred": self.predict(output)[:, 0]}

    def metrics(self, table: pd.DataFrame) -> dict[str, float]:
        """Metrics of this outcome on one prediction table (any level), keyed by ``metric_names``."""
        raise NotImplementedError

    def plots(self, tables: Mapping[str, pd.DataFrame], plot_dir: Path, epoch: int, title: str) -> list[Path]:
        """Write this outcome's plots of one evaluated epoch; returns the files."""
        return []

    def heatmap_layers(self, head_mean: float = 0.0, head_scale: float = 1.0) -> list[HeatmapLayer]:
        """What a heatmap of this outcome draws: one panel per prediction column, each with a fixed scale.

        The default (a value in the column's units) spans the training mean ± 2 sd, which the model's
        head carries (``head_mean``, ``head_scale``: its ``output_mean`` and ``output_scale``), with
        ``viridis``; the same for every slide of the model.
        """
        low, high = head_mean - 2 * head_scale, head_mean + 2 * head_scale
        return [
            HeatmapLayer(column, self.name, f"predicted {self.name}", "viridis", low, high)
            for column in self.output_columns()
        ]


def check_targets(outcomes: Sequence[Outcome], parts: Sequence[np.ndarray], where: str, training: bool) -> None:
    """Let each outcome check its training (raise) or validation (warn) targets, e.g. Cox events.

    Args:
        outcomes: The outcomes, in target order.
        parts: Per outcome, the slides' (or bags') targets.
        where: What is checked (e.g. ``fold2``), named in the messages.
        training: Training targets (``check_training``) or validation targets (``check_validation``).
    """
    for outcome, part in zip(outcomes, parts, strict=True):
        (outcome.check_training if training else outcome.check_validation)(part, where)


def metric_bounds(outcomes: Sequence[Outcome]) -> dict[str, tuple[float, float]]:
    """Bounds of every metric the outcomes declare, as validation and as training metric.

    Each declared metric is bounded as ``val/{level}_{metric}/{outcome}`` and as ``train/{metric}/{outcome}``
    (the batch metric of :meth:`Outcome.train_metrics`, e.g. ``train/accuracy/tumor_type``): a training
    accuracy is a proportion too, so its fold interval must stay in [0, 1] as the validation one does.
    """
    bounds: dict[str, tuple[float, float]] = {}
    for outcome in outcomes:
        for metric, limits in outcome.metric_bounds.items():
            bounds.update({f"val/{level}_{metric}/{outcome.name}": limits for level in LEVELS})
            bounds[f"train/{metric}/{outcome.name}"] = limits
    return bounds


def available_kinds() -> list[str]:
    """Names of the kinds shipped in this package (one module each)."""
    package = importlib.import_module(__package__)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in _NOT_KINDS)


def outcome_kind(kind: str) -> type[Outcome]:
    """The :class:`Outcome` subclass of ``kind``.

    Args:
        kind: A shipped kind (``categorical``, ``linear``, ``cox``: a module of this package), or the
            dotted path of a module elsewhere (``my_lab.ordinal``) that defines a subclass whose ``kind`` is
            the module's last name (``ordinal``).

    Raises:
        ConfigError: no such kind (the message lists the shipped ones).
    """
    kind = str(kind)
    module_name = kind if "." in kind else f"{__package__}.{kind}"
    short = kind.rsplit(".", 1)[-1]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        module = None
    for value in vars(module).values() if module is not None else ():
        if isinstance(value, type) and issubclass(value, Outcome) and value.kind == short:
            return value
    raise ConfigError(f"Unknown outcome kind {kind!r} (loss.kind); choose one of {available_kinds()}")


def outcome_from_dict(data: Mapping[str, Any]) -> Outcome:
    """Rebuild an outcome from :meth:`Outcome.to_dict` output (for a file's outcomes: :func:`outcomes_from_file`)."""
    cls = outcome_kind(data["kind"])
    return cls(name=data["name"], classes=list(data.get("classes") or []), event=data.get("event"))


def kind_problems(records: Any, allowed_kinds: Iterable[str] = (), key: str = "outcomes") -> list[str]:
    """The outcome kinds read from a file that rebuilding them would import without being allowed, one line each.

    A kind of ``src/outcomes`` (``categorical``, ``linear``, ``cox``) is allowed; one from a module elsewhere
    (``my_lab.ordinal``) only when ``allowed_kinds`` lists it (rule (c) of :mod:`src.trust`).
    """
    if not isinstance(records, list):
        return [f"{key} is a {type(records).__name__}, not a list of outcomes"]
    allowed = set(available_kinds()) | set(allowed_kinds)
    what = "outcome kind (rebuilding it would import its module)"
    kinds = [record.get("kind") if isinstance(record, Mapping) else record for record in records]
    problems = [name_problem(kind, allowed, f"{key}[{i}].kind", what) for i, kind in enumerate(kinds)]
    return [problem for problem in problems if problem]


def foreign_kinds(records: Any, allowed_kinds: Iterable[str] = ()) -> list[str]:
    """The kinds from modules outside ``src/outcomes`` (dotted names) that ``records`` name and are not allowed."""
    kinds = (
        [record.get("kind") for record in records if isinstance(record, Mapping)] if isinstance(records, list) else []
    )
    return sorted({k for k in kinds if isinstance(k, str) and "." in k} - set(allowed_kinds))


def outcomes_from_file(records: Any, path: str | Path, allowed_kinds: Iterable[str] = ()) -> list[Outcome]:
    """The outcomes a file records (``params.json``'s ``outcomes``), importing only allowed kinds.

    Args:
        records: The file's ``outcomes`` (:meth:`Outcome.to_dict` of each).
        path: The file, named in the error.
        allowed_kinds: Kinds from modules outside ``src/outcomes`` that may be imported (dotted module names).

    Raises:
        UnsafeFileError: a kind not allowed (naming the file, the key, the kind and how to allow it); nothing
            was imported.
    """
    problems = kind_problems(records, allowed_kinds)
    if problems:
        others = foreign_kinds(records, allowed_kinds)
        raise UnsafeFileError(
            f"{path} was not used: it names code that is not allowed, and nothing was imported:\n  - "
            + "\n  - ".join(problems)
            + f"\nAllowed outcome kinds: those of src/outcomes ({', '.join(available_kinds())}) and allowed_kinds."
            + (f" If you trust this file, allow them: allowed_kinds={others}." if others else "")
        )
    return [outcome_from_dict(record) for record in records]


def numeric_column(table: pd.DataFrame, column: str, kind: str, hint: str = "") -> pd.Series:
    """The column as numbers; text in it is an error naming the column, a slide and its value."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & table[column].notna()
    if bad.any():
        sample = table.loc[bad, column].iloc[0]
        slide = table.loc[bad, "slide"].iloc[0]
        raise AnnotationError(
            f"Column '{column}' must be numeric for a {kind} loss, but slide '{slide}' has {sample!r}{hint}"
        )
    return values
