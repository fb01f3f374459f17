"""The slides a prediction reads: a folder, a list of files, or those an annotations file names.

An annotations file (``annotations=``, or ``slides=`` given as a ``.csv``) also gives each slide's patient
(for ``patient_predictions.csv``), the clinical inputs a model needs and, in evaluation mode, the
outcomes. Everything that can be wrong with it is checked here, before any slide is read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.annotations import read_annotations
from src.errors import AnnotationError
from src.outcomes import Outcome
from src.slides.discover import find_slides, unreadable_slides
from src.slides.reader import reader_class, slide_name

log = logging.getLogger(__name__)


@dataclass
class SlideInput:
    """One slide to predict.

    Attributes:
        name: Slide name (file name without its extension).
        path: The slide file (None: the annotations name a slide that has no file).
        row: Its annotation row (one-row table; empty without annotations).
    """

    name: str
    path: Path | None
    row: pd.DataFrame

    @property
    def patient(self) -> str | None:
        """The slide's patient, when the annotations have a ``patient`` column."""
        if "patient" not in self.row.columns or not len(self.row):
            return None
        return str(self.row["patient"].iloc[0])


def slide_files(slides: str | Sequence[str], backend: str | None) -> dict[str, Path]:
    """Slide name → file for ``slides``: a folder (every slide file in it) or a list of files and folders.

    Raises:
        FileNotFoundError: a path that does not exist (naming it).
        ValueError: two slides with one name.
    """
    extensions = reader_class(backend).extensions
    entries = [slides] if isinstance(slides, str | Path) else list(slides)
    found: dict[str, Path] = {}
    for entry in map(Path, entries):
        if entry.is_dir():
            files = {**unreadable_slides(entry, extensions), **find_slides(entry, extensions)}
        elif entry.is_file():
            files = {slide_name(entry): entry}
        else:
            raise FileNotFoundError(f"slides: {entry} is neither a slide file nor a folder")
        for name, path in files.items():
            if name in found and found[name] != path:
                raise ValueError(f"Two slides named {name!r}: {found[name]} and {path}; rename one of them")
            found[name] = path
    return dict(sorted(found.items()))


def slide_inputs(
    slides: str | Sequence[str],
    annotations: str | None,
    slides_dir: str | None,
    backend: str | None,
) -> tuple[list[SlideInput], pd.DataFrame | None]:
    """The slides to predict and the annotation rows of those slides (None without annotations).

    What is asked for depends on ``slides``:

    - an annotations ``.csv`` (files in ``slides_dir``): every row is a slide to predict; a row whose slide has
      no file there is reported as failed;
    - a folder with ``annotations=``: the folder's slides that the annotations name;
    - a list of files (or folders) with ``annotations=``: every slide listed; the annotations give their
      patients, clinical inputs and outcomes (a slide without a row is predicted without them, or stopped by
      :func:`check_rows` when the model or the evaluation needs them).

    Annotation rows of slides that are not asked for are not part of the prediction (counted in the log) and are
    left out of the table returned, so nothing about them is checked or evaluated.

    Args:
        slides: A folder, a list of slide files (or folders), or an annotations ``.csv``.
        annotations: An annotations CSV (``slide``, optional ``patient``, clinical and outcome columns).
        slides_dir: Where the files of an annotations-only input are.
        backend: The slide reader (its file extensions decide what a slide file is).

    Raises:
        AnnotationError: an annotations file that cannot be read, or duplicated slide names in it.
        ValueError: ``slides`` is a CSV without ``slides_dir``, or there is no slide at all.
    """
    listed = not isinstance(slides, str)  # a list of files: each one is asked for
    named_by_csv = isinstance(slides, str) and slides.lower().endswith(".csv")
    if named_by_csv:
        annotations = annotations or str(slides)
        if not slides_dir:
            raise ValueError(f"slides={slides!r} is an annotations file: set slides_dir to the folder of its slides")
        slides = slides_dir
    files = slide_files(slides, backend)
    if annotations is None:
        inputs = [SlideInput(name, path, pd.DataFrame()) for name, path in files.items()]
        table = None
    else:
        table = read_annotations(annotations, required=("slide",))
        table = table[table["slide"].notna()].reset_index(drop=True)
        duplicated = table["slide"][table["slide"].duplicated()].unique().tolist()
        if duplicated:
            raise AnnotationError(f"{annotations}: slide(s) listed more than once: {duplicated[:10]}")
        names = table["slide"].astype(str)
        if named_by_csv:
            wanted = list(names)
        elif listed:
            wanted = list(files)
        else:
            wanted = [name for name in files if name in set(names)]
        rows = {name: i for i, name in enumerate(names)}
        inputs = [
            SlideInput(name, files.get(name), table.iloc[[rows[name]]].reset_index(drop=True) if name in rows
                       else table.iloc[[]].reset_index(drop=True))
            for name in wanted
        ]  # fmt: skip
        _log_left_out(files, names, wanted, annotations, slides, listed)
        table = table[names.isin(wanted)].reset_index(drop=True)
    if not inputs:
        raise ValueError(
            f"No slide to predict in slides={slides!r}" + (f" named by {annotations}" if annotations else "")
        )
    return inputs, table


def _log_left_out(
    files: dict[str, Path], names: pd.Series, wanted: Sequence[str], annotations: str, slides: object, listed: bool
) -> None:
    """Log the slide files and annotation rows that are not predicted."""
    wanted_set = set(wanted)
    unlisted = sorted(set(files) - wanted_set)
    if unlisted:
        log.info("%d slide file(s) not in %s are not predicted: %s", len(unlisted), annotations, unlisted[:10])
    not_asked = [name for name in names if name not in wanted_set]
    if not_asked:
        # rows of slides not given: a cohort file used for a few of its slides (info); a folder missing some of
        # the slides its annotations name may be a mistake (warning)
        level, given = (logging.INFO, "given in slides=") if listed else (logging.WARNING, f"in {slides}")
        log.log(
            level, "%d annotation row(s) of %s name no slide %s: not predicted: %s",
            len(not_asked), annotations, given, not_asked[:10],
        )  # fmt: skip


def check_rows(slides: Sequence[SlideInput], annotations: str | None, needed_for: str | None) -> None:
    """Stop when a slide asked for has no annotation row and ``needed_for`` needs one; else warn.

    Args:
        slides: The slides to predict.
        annotations: The annotations file (None: there are no rows to check).
        needed_for: What needs every slide's row (the model's clinical inputs, the evaluation), or None.

    Raises:
        AnnotationError: naming the slides without a row, what needs it, and how to fix it.
    """
    if annotations is None:
        return
    rowless = [s.name for s in slides if s.path is not None and not len(s.row)]
    if not rowless:
        return
    if needed_for:
        raise AnnotationError(
            f"{annotations} has no row for slide(s) {rowless[:10]} of slides= ({len(rowless)} in all), and "
            f"{needed_for} needs one: add their rows, or leave them out of slides="
        )
    log.warning("No row in %s for slide(s) %s: predicted without a patient", annotations, rowless[:10])


def check_columns(table: pd.DataFrame | None, columns: Sequence[str], why: str) -> None:
    """Raise when the annotations lack ``columns`` (or there are none), naming them and why they are needed.

    Raises:
        AnnotationError: naming the missing columns, what needs them, and the columns there are.
    """
    if not columns:
        return
    if table is None:
        raise AnnotationError(f"{why} {list(columns)}: pass annotations=<csv> with those columns")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise AnnotationError(f"{why} {missing}, which the annotations lack (columns: {list(table.columns)})")


def evaluation_targets(
    table: pd.DataFrame, model_outcomes: Sequence[Outcome], names: Sequence[str]
) -> tuple[list[Outcome], dict[str, list[np.ndarray]]]:
    """The outcomes to evaluate and each slide's encoded targets, with the model's own encoding.

    Class indices come from the model's class names (not the new cohort's), so a cohort with fewer classes
    is scored on the same heads. Slides with a blank outcome are left out of the evaluation (logged).

    Returns:
        ``(outcomes, targets)``: the outcomes in ``names`` order, and slide → one ``(1, n_targets)`` part
        per outcome.

    Raises:
        AnnotationError: an outcome the model does not predict, a missing column, or a class the model
            does not know (naming the slide, the value and the model's classes).
    """
    by_name = {o.name: o for o in model_outcomes}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise AnnotationError(f"outcomes={unknown}: the model predicts {list(by_name)}")
    outcomes = [by_name[n] for n in names]
    check_columns(table, [c for o in outcomes for c in o.columns], "Evaluating needs the outcome column(s)")
    columns = [c for o in outcomes for c in o.columns]
    values = table[columns]
    blank = values.isna().any(axis=1) | (values.astype(str).apply(lambda s: s.str.strip()) == "").any(axis=1)
    if blank.any():
        log.warning(
            "Left out of the evaluation: %d slide(s) with a blank outcome: %s",
            blank.sum(),
            table.slide[blank].tolist()[:10],
        )
    usable = table[~blank].reset_index(drop=True)
    parts = []
    for outcome in outcomes:
        part = outcome.encode(usable)
        bad = np.isnan(part).any(axis=1)
        if bad.any():
            row = usable[bad].iloc[0]
            raise AnnotationError(
                f"Slide '{row['slide']}': {outcome.name}={row[outcome.name]!r} is not a value the model knows "
                f"(classes: {outcome.classes})"
            )
        parts.append(part)
    targets = {str(s): [p[[i]] for p in parts] for i, s in enumerate(usable["slide"])}
    return outcomes, targets
