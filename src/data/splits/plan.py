"""The validation plan of a run: folds from a strategy, the project's splits cache, or a given file.

Cache rule: a strategy that draws at random (``k_fold``, ``k_fold_site``, ``bootstrap``, ``fixed``) saves its
folds under the project's cache folder (default: ``splits/`` next to the annotations file), in a file
keyed by the strategy, its settings (``k``, ``val_fraction``, site column), the seed, the outcome columns,
and the sorted patient list with each patient's categorical outcome labels (and site). A later run
re-uses the file when, and only when, all of these match.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from src.data.annotations import AnnotationError
from src.data.splits.folds import Fold, Splitter, check_folds, patient_table, select_folds
from src.infra.files import write_json_atomic
from src.trust import plain_name

log = logging.getLogger(__name__)


@dataclass
class SplitPlan:
    """All folds of a run, which of them are trained, and where they came from.

    Attributes:
        strategy: Strategy name (``k_fold``, ``bootstrap``, ...).
        seed: Seed the folds were drawn with.
        params: The strategy's settings (``k``, ``val_fraction``, ...).
        outcomes: Categorical outcome columns the folds are stratified on.
        folds: Every fold of the strategy.
        trained: Names of the folds this run trains (``validation.folds``).
        source: ``computed``, ``cache`` or ``file``.
        path: The cache file or the given splits file, if any.
        dropped_patients: Patients of the dataset in no fold of a given splits file or of the cache, and patients
            of the folds left out by `restrict` (e.g. no slide with tiles).
        failed_slides: Slide → reason, for the slides left out because their tiles could not be prepared
            (``on_slide_error=skip``).
    """

    strategy: str
    seed: int
    params: dict[str, Any]
    outcomes: list[str]
    folds: list[Fold]
    trained: list[str] = field(default_factory=list)
    source: str = "computed"
    path: Path | None = None
    dropped_patients: list[str] = field(default_factory=list)
    failed_slides: dict[str, str] = field(default_factory=dict)

    def trained_folds(self) -> list[Fold]:
        """The folds to train, in order."""
        wanted = set(self.trained)
        return [f for f in self.folds if f.name in wanted]

    def restrict(self, patients: Iterable[str]) -> SplitPlan:
        """The same plan with only `patients` in its folds; every other patient of a fold is dropped.

        Folds keep their names and order (the cache and a forced ``validation.splits`` file are not
        changed); the dropped patients are listed in ``dropped_patients``.
        """
        keep = {str(p) for p in patients}
        folds = [
            replace(
                fold,
                train_patients=[p for p in fold.train_patients if p in keep],
                val_patients=[p for p in fold.val_patients if p in keep],
            )
            for fold in self.folds
        ]
        everyone = {p for fold in self.folds for p in fold.train_patients + fold.val_patients}
        dropped = sorted(set(self.dropped_patients) | (everyone - keep))
        return replace(self, folds=folds, dropped_patients=dropped)

    def to_dict(self, annotations: pd.DataFrame | None = None) -> dict:
        """``splits.json`` content; with ``annotations``, each fold also lists its slides."""
        slides: dict[str, list[str]] = {}
        if annotations is not None:
            slides = annotations.groupby("patient")["slide"].agg(list).to_dict()
        folds = []
        for fold in self.folds:
            entry = fold.to_dict()
            if annotations is not None:
                entry["train_slides"] = [s for p in fold.train_patients for s in slides.get(p, [])]
                entry["val_slides"] = [s for p in fold.val_patients for s in slides.get(p, [])]
            folds.append(entry)
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "k": len(self.folds),
            "val_fraction": self.params.get("val_fraction"),
            "params": self.params,
            "outcomes": self.outcomes,
            "source": self.source,
            "path": str(self.path) if self.path else None,
            "trained": self.trained,
            "dropped_patients": self.dropped_patients,
            "failed_slides": self.failed_slides,
            "folds": folds,
        }

    @classmethod
    def read(cls, path: str | Path) -> SplitPlan:
        """The plan a run wrote with :meth:`write` (its folds, trained folds, dropped patients and failed slides)."""
        data = json.loads(Path(path).read_text())
        return cls(
            str(data["strategy"]),
            int(data["seed"]),
            dict(data.get("params") or {}),
            list(data.get("outcomes") or []),
            folds_from(data, Path(path), "splits.json"),
            list(data.get("trained") or []),
            str(data.get("source") or "file"),
            Path(data["path"]) if data.get("path") else None,
            list(data.get("dropped_patients") or []),
            {str(slide): str(reason) for slide, reason in (data.get("failed_slides") or {}).items()},
        )

    def write(self, path: str | Path, annotations: pd.DataFrame | None = None) -> None:
        """Write ``splits.json`` (patients and slides per fold)."""
        _write_json(Path(path), self.to_dict(annotations))


def cache_key(splitter: Splitter, strategy: str, annotations: pd.DataFrame, strata: Sequence[str], seed: int) -> dict:
    """Everything the folds depend on: strategy, settings, seed, outcomes, patients with labels (and sites)."""
    table = patient_table(annotations, strata, columns=splitter.key_columns)
    return {
        "strategy": strategy,
        "params": splitter.params(),
        "seed": int(seed),
        "outcomes": list(strata),
        "patients": table.astype(str).to_numpy().tolist(),
    }


def cache_file(cache_dir: Path, key: dict) -> Path:
    """Cache file of ``key``: ``<cache_dir>/<strategy>-<hash>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{key['strategy']}-{digest}.json"


def load_splits(path: str | Path, what: str = "validation.splits") -> tuple[str, list[Fold]]:
    """Read the strategy and folds of a ``splits.json`` (or cache) file; ``what`` names it in errors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a splits file, or two folds with one name.
        UnsafeFileError: a fold name that is not a plain folder name (rule (d) of :mod:`src.trust`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    data = json.loads(path.read_text())
    return str(data.get("strategy", "file")) if isinstance(data, dict) else "file", folds_from(data, path, what)


def folds_from(data: Any, path: Path, what: str) -> list[Fold]:
    """The folds of a splits file's content (``splits.json``, the cache, a ``validation.splits`` file).

    A fold's name becomes its folder in the run folder, so it must be one plain name, and unique.

    Raises:
        ValueError: not a splits file (no ``folds`` with names and patients), or two folds with one name.
        UnsafeFileError: a fold name that is not a plain folder name (absolute, ``..``, a separator...).
    """
    try:
        folds = [Fold.from_dict(f) for f in data["folds"]]
        names = [plain_name(f["name"], f"folds[{i}].name", path) for i, f in enumerate(data["folds"])]
    except (KeyError, TypeError) as error:
        raise ValueError(f"{what}: {path} is not a splits.json file ({error!r} missing)") from error
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{what}: {path} names two folds {twice[0]!r}: each fold needs its own name (its folder)")
    return folds


def check_given_folds(folds: Sequence[Fold], patients: Sequence[str], what: str) -> list[str]:
    """Check folds read from a file against the dataset's ``patients``; returns the patients in no fold.

    The same checks for a ``validation.splits`` file and for the splits cache: no patient in both sets of a
    fold, none outside the dataset (errors), and a warning naming the dataset's patients that no fold holds
    (they are the plan's ``dropped_patients``).

    Raises:
        AnnotationError: a leaking fold or an unknown patient, prefixed with ``what``.
    """
    try:
        check_folds(folds, patients)
    except AnnotationError as error:
        raise AnnotationError(f"{what}: {error}") from None
    unused = sorted(set(patients) - {p for f in folds for p in f.train_patients + f.val_patients})
    if unused:
        log.warning("%d patient(s) are in no fold of %s and are not used: %s", len(unused), what, unused[:10])
    return unused


def plan_splits(
    splitter: Splitter,
    annotations: pd.DataFrame,
    strata: Sequence[str],
    seed: int,
    strategy: str,
    folds: Sequence[int] | None = None,
    cache_dir: str | Path | None = None,
    splits_file: str | Path | None = None,
) -> SplitPlan:
    """Make (or load) the folds of a run and check them against the current patients.

    Args:
        splitter: The strategy (``validation.splitter``).
        annotations: The run's slides (``patient``, ``slide`` and annotation columns).
        strata: Categorical outcome columns.
        seed: Random seed.
        strategy: Strategy name (``validation.name``).
        folds: Train only these folds (1-based), e.g. ``[1, 3]``; ``None`` = all.
        cache_dir: Project cache folder; ``None`` disables the cache.
        splits_file: Force the folds of this ``splits.json``; its patients must all be in ``annotations``.

    Raises:
        AnnotationError: folds that leak a patient, or a given file naming unknown patients.
    """
    patients = sorted(annotations["patient"].astype(str).unique())
    params, source, path, unused = splitter.params(), "computed", None, []
    if splits_file:
        path = Path(splits_file)
        strategy, all_folds = load_splits(path)
        source = "file"
        unused = check_given_folds(all_folds, patients, f"validation.splits={path}")
    else:
        key = cache_key(splitter, strategy, annotations, strata, seed) if splitter.cacheable and cache_dir else None
        cache = cache_file(Path(cache_dir), key) if key and cache_dir else None
        cached = _read_cache(cache, key) if cache and key else None
        if cached is not None:
            all_folds, source, path = cached, "cache", cache
            log.info("Re-using cached splits %s", path)
            # an edited cache is used as it is, checked as a given file (delete it to draw the folds again)
            unused = check_given_folds(all_folds, patients, f"the splits cache {path}")
        else:
            all_folds = splitter.split(annotations, list(strata), int(seed))
            if cache and key:
                path = cache
                try:
                    _write_json(path, {**key, "folds": [f.to_dict() for f in all_folds]})
                except OSError as error:  # e.g. a read-only project folder: the run goes on uncached
                    log.warning("Could not cache the splits in %s (%s); set validation.cache_dir", path, error)
                    path = None
            check_folds(all_folds, patients)
    trained = [f.name for f in select_folds(all_folds, folds)]
    return SplitPlan(strategy, int(seed), params, list(strata), all_folds, trained, source, path, unused)


def _read_cache(path: Path, key: dict) -> list[Fold] | None:
    """The cached folds when the stored key equals ``key`` in every field, else ``None``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or {k: data.get(k) for k in key} != json.loads(json.dumps(key)):
        return None
    return folds_from(data, path, "the splits cache")


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (parallel jobs may write the same cache file)."""
    write_json_atomic(path, data)
