"""The Dataset: annotations ⨝ slide files ⨝ tile shards, filtered, with labels (Slideflow's shape)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.data.annotations import AnnotationError, apply_filters, load_annotations, validate_annotations
from src.data.tiles import TileIndex
from src.extraction.shards import shard_dir
from src.outcomes import Outcome, TargetLayout, outcome_kind
from src.outcomes.checks import check_patient_labels, infer_kind
from src.slides.discover import find_slides, unreadable_slides, unsupported_format
from src.slides.mpp import parse_mpp_column
from src.slides.reader import backend_name, reader_class
from src.slides.tile_settings import TileSettings

log = logging.getLogger(__name__)

#: ``outcome_blank``: what to do with slides whose outcome (or event) is blank.
OUTCOME_BLANK = ("drop", "error")


class SlideLabels(Mapping[str, Any]):
    """Slide → label mapping (as Slideflow's ``dataset.labels()``), carrying the outcome encodings.

    ``labels[slide]`` is the label of a single outcome (class index or float; ``(time, event)`` for cox),
    or a tuple of them for several outcomes.
    """

    def __init__(self, outcomes: list[Outcome], slides: Sequence[str], targets: np.ndarray) -> None:
        self.outcomes = outcomes
        self.layout = TargetLayout(outcomes)
        self._row = {slide: i for i, slide in enumerate(slides)}
        self._targets = targets

    def targets(self, slides: Sequence[str]) -> np.ndarray:
        """(len(slides), n_targets) float32 target vectors."""
        missing = [s for s in slides if s not in self._row]
        if missing:
            raise KeyError(f"No label for slide(s) {missing[:5]}")
        return self._targets[[self._row[s] for s in slides]]

    def parts(self, slides: Sequence[str]) -> list[np.ndarray]:
        """Per outcome, the (len(slides), n_targets) targets of ``slides``."""
        return self.layout.split(self.targets(slides))

    def __getitem__(self, slide: str) -> Any:
        row = self._targets[self._row[slide]][None]
        values = [o.label(part[0]) for o, part in zip(self.outcomes, self.layout.split(row), strict=True)]
        return values[0] if len(values) == 1 else tuple(values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


class Dataset:
    """The slides an experiment uses, with their annotations and tile shards.

    Args:
        annotations: Path to the annotations CSV or an already-loaded table (one row per slide).
        slides_dir: Folder holding the slide files (searched by slide name).
        tiles: Tile settings (or their config mapping); decides which shard folder is used.
        shards_dir: Root of the tile shards.
        filters: Column → allowed values, e.g. ``{"dataset": ["train"]}``.
        mpp_override: Microns per pixel for slides whose file records none.
        backend: Slide reader (``dataset.backend``: None = tiffslide, ``"openslide"``, or a dotted
            class path); decides which file extensions are slides.
        mpp_column: Annotation column with each slide's microns per pixel, replacing the file's own
            (blank = the file's own); checked here, so a bad value stops before any tile is extracted.

    Raises:
        AnnotationError: bad annotations, or a `mpp_column` value that is not a positive number.
    """

    def __init__(
        self,
        annotations: str | Path | pd.DataFrame,
        slides_dir: str | Path | None = None,
        tiles: TileSettings | Mapping | None = None,
        shards_dir: str | Path | None = None,
        filters: Mapping[str, Sequence] | None = None,
        mpp_override: float | None = None,
        backend: str | None = None,
        mpp_column: str | None = None,
    ) -> None:
        if isinstance(annotations, pd.DataFrame):
            table = validate_annotations(annotations)
        else:
            table = load_annotations(annotations)
        self.source = "annotations" if isinstance(annotations, pd.DataFrame) else str(annotations)
        self.annotations = apply_filters(table, dict(filters) if filters else None)
        self.slides_dir = Path(slides_dir) if slides_dir is not None else None
        if tiles is not None and not isinstance(tiles, TileSettings):
            tiles = TileSettings.from_config(tiles)
        self.tiles: TileSettings | None = tiles
        self.shards_dir = Path(shards_dir) if shards_dir is not None else None
        self.mpp_override = mpp_override
        self.backend = backend
        self.mpp_column = mpp_column or None
        self.slide_mpps()

    def _copy(self, annotations: pd.DataFrame) -> Dataset:
        clone = object.__new__(Dataset)
        clone.__dict__.update(self.__dict__)
        clone.annotations = annotations.reset_index(drop=True)
        return clone

    def filter(self, filters: Mapping[str, Sequence]) -> Dataset:
        """A new Dataset keeping the slides whose annotation values pass ``filters``."""
        return self._copy(apply_filters(self.annotations, filters))

    def filter_blank(self, columns: Sequence[str]) -> Dataset:
        """A new Dataset without slides that have a blank value in any of ``columns``."""
        for column in columns:
            if column not in self.annotations.columns:
                raise AnnotationError(f"Unknown column '{column}': columns are {list(self.annotations.columns)}")
        values = self.annotations[list(columns)]
        blank = values.isna().any(axis=1) | (values.astype(str).apply(lambda s: s.str.strip()) == "").any(axis=1)
        return self._copy(self.annotations[~blank])

    def drop_blank_outcomes(self, columns: Sequence[str], outcome_blank: str = "drop") -> Dataset:
        """A new Dataset without slides that have a blank outcome (or event) in any of ``columns``.

        Args:
            columns: The outcome columns (and the event column).
            outcome_blank: ``drop`` (a warning per column with the count and the slides) or ``error``.

        Raises:
            AnnotationError: ``outcome_blank`` is ``error`` and a slide has a blank outcome (naming the
                file, the column and the slides), or every slide has one (no slides left).
            ValueError: ``outcome_blank`` is neither ``drop`` nor ``error``.
        """
        policy = str(getattr(outcome_blank, "value", outcome_blank))
        if policy not in OUTCOME_BLANK:
            raise ValueError(f"outcome_blank={policy!r}; choose one of {list(OUTCOME_BLANK)}")
        kept = self.filter_blank(columns)
        if len(kept) == len(self):
            return kept
        if not len(kept):
            raise AnnotationError(
                f"{self.source}: no slides left: every one of its {len(self)} slide(s) has a blank value in "
                f"{list(columns)}; fill in the outcome (and event) column(s), or choose other outcomes"
            )
        named = {}
        for column in columns:
            filled = set(self.filter_blank([column]).slides())
            blank = [s for s in self.slides() if s not in filled]
            if blank:
                named[column] = f"{len(blank)} slide(s) with a blank '{column}': {_some(blank)}"
        if policy == "error":
            raise AnnotationError(
                f"{self.source}: {'; '.join(named.values())} (outcome_blank=error; fill them in, or set "
                "outcome_blank=drop to leave those slides out)"
            )
        for text in named.values():
            log.warning("Dropped %s", text)
        return kept

    def select_patients(self, patients: Sequence[str]) -> Dataset:
        """A new Dataset holding only the slides of ``patients``."""
        return self._copy(self.annotations[self.annotations.patient.isin(set(patients))])

    def slides(self) -> list[str]:
        """Slide names, in annotation order."""
        return self.annotations["slide"].tolist()

    def patients(self) -> dict[str, str]:
        """Slide → patient."""
        return dict(zip(self.annotations.slide, self.annotations.patient, strict=True))

    def __len__(self) -> int:
        return len(self.annotations)

    def outcomes(
        self, names: Sequence[str], kinds: Mapping[str, str], event_header: str | None = None
    ) -> list[Outcome]:
        """Validate and describe the outcomes ``names`` (kind per outcome from the loss)."""
        outcomes = [outcome_kind(kinds[n]).from_column(self.annotations, n, event_header) for n in names]
        check_patient_labels(self.annotations, outcomes)
        return outcomes

    def labels(
        self,
        headers: str | Sequence[str],
        kind: str | Mapping[str, str] | None = None,
        event_header: str | None = None,
        outcome_blank: str = "drop",
    ) -> tuple[SlideLabels, list[str] | dict[str, list[str]]]:
        """Slide labels for one or several outcome columns, as Slideflow's ``Dataset.labels``.

        Args:
            headers: Outcome column(s).
            kind: Outcome kind (one for all, or per column). ``None`` infers: numeric columns with
                fractional values or many distinct values are ``linear``, everything else ``categorical``.
            event_header: Event column for ``cox`` outcomes.
            outcome_blank: Slides with a blank outcome or event are left out and logged (``drop``), or
                are an error (``error``), as :meth:`drop_blank_outcomes`.

        Returns:
            ``(labels, unique)``: slide → label mapping, and the class names (per outcome when several).
        """
        names = [headers] if isinstance(headers, str) else list(headers)
        missing = [n for n in names if n not in self.annotations.columns]
        if missing:
            raise AnnotationError(
                f"Unknown outcome(s) {missing}: annotation columns are {list(self.annotations.columns)}"
            )
        kinds = {n: (kind[n] if isinstance(kind, Mapping) else kind) or infer_kind(self.annotations[n]) for n in names}
        usable = self.drop_blank_outcomes(names + ([event_header] if event_header else []), outcome_blank)
        outcomes = usable.outcomes(names, kinds, event_header)
        targets = np.concatenate([o.encode(usable.annotations) for o in outcomes], axis=1)
        labels = SlideLabels(outcomes, usable.slides(), targets)
        unique = {o.name: o.classes for o in outcomes}
        return labels, (unique[names[0]] if len(names) == 1 else unique)

    def slide_mpps(self) -> dict[str, float]:
        """Slide → microns per pixel from the ``mpp_column`` (slides with a blank value are left out).

        Raises:
            AnnotationError: the column is missing, or a value is not a positive number (naming the slide).
        """
        if not self.mpp_column:
            return {}
        return parse_mpp_column(self.annotations, self.mpp_column)

    def slide_paths(self) -> dict[str, Path]:
        """Slide → file for every slide of this dataset.

        Raises:
            AnnotationError: slides listed in the annotations but not found in ``slides_dir``, or in a
                format the backend does not read (naming the file and the backend that reads it).
        """
        if self.slides_dir is None:
            raise AnnotationError("This Dataset has no slides_dir")
        reader = reader_class(self.backend)
        found = find_slides(self.slides_dir, reader.extensions)
        missing = [s for s in self.slides() if s not in found]
        if missing:
            other = unreadable_slides(self.slides_dir, reader.extensions)
            problems = [
                f"slide {s!r}: {unsupported_format(other[s], backend_name(reader))}" for s in missing if s in other
            ]
            absent = [s for s in missing if s not in other]
            if absent:
                problems.append(
                    f"{len(absent)} slide(s) listed in the annotations are missing from {self.slides_dir}: "
                    f"{absent[:10]} (slide files: {', '.join(sorted(reader.extensions))}; "
                    "other formats need another dataset.backend)"
                )
            raise AnnotationError("\n".join(problems))
        return {s: found[s] for s in self.slides()}

    @property
    def shard_dir(self) -> Path:
        """Folder of this dataset's shards for its tile settings."""
        if self.shards_dir is None or self.tiles is None:
            raise ValueError("This Dataset has no shards_dir or tile settings")
        return shard_dir(self.shards_dir, self.tiles)

    def tile_index(self) -> TileIndex:
        """Index the tiles of every slide (shards must exist; see ``src.extraction``)."""
        return TileIndex.from_shards(self.shard_dir, self.slides())


def _some(slides: Sequence[str], shown: int = 10) -> str:
    """The first ``shown`` slides, and how many more there are."""
    more = f" and {len(slides) - shown} more" if len(slides) > shown else ""
    return f"{list(slides[:shown])}{more}"
