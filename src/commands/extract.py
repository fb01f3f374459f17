"""What ``python extract.py [project=...] [tiles=...] [workers=N] [slides=all] [part=i/n] [...]`` runs.

Builds the demo project when the project config has a ``demo`` generator, extracts the slides
of ``project.slides_dir`` (those named in ``project.annotations`` by default) into
``project.shards_dir`` and prints a summary. ``part=i/n`` extracts only the i-th of n disjoint parts of the
slides (one job per part: ``src.extraction.parts``). ``project.mpp_column`` (an annotation column of
per-slide MPPs) is read and checked before any tile is extracted.

Nothing here imports torch or torchvision (``tests/commands/test_extract_command.py`` checks it), so
every extraction process, e.g. each task of a SLURM array, starts without them.
"""

from __future__ import annotations

import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from src.config.extraction_rules import validate_extraction
from src.config.schema import SlideChoice
from src.data.annotations import read_annotations
from src.errors import AnnotationError
from src.extraction.extract import extract_slides
from src.extraction.parts import parse_part, slide_part
from src.extraction.report import REPORT_NAME, read_report, summarize
from src.infra.processes import check_workers
from src.slides.discover import find_slides, unreadable_slides
from src.slides.mpp import parse_mpp_column
from src.slides.reader import reader_class
from src.slides.tile_settings import TileSettings

SLIDE_CHOICES = tuple(choice.value for choice in SlideChoice)


def run(cfg: DictConfig) -> int:
    """Extract the slides of a composed ``conf/extract.yaml``; returns the number of slides that failed.

    Every setting is checked before the demo is built or a slide is read.

    Raises:
        ConfigError: a tile setting or project MPP key that cannot run (``src.config.extraction_rules``).
        ValueError: a bad ``part``, ``workers`` or ``dataset.backend``.
        AnnotationError: the annotations file or its ``project.mpp_column`` cannot be read.
    """
    validate_extraction(cfg)  # fail on bad settings before any I/O
    parse_part(cfg.get("part"))
    check_workers(int(cfg.workers), "workers")  # more processes than the job's CPUs only wait on each other
    settings = TileSettings.from_config(cfg.tiles)
    backend = cfg.dataset.get("backend")
    reader_class(backend)  # and on an unknown backend
    project = cfg.project
    if project.get("demo") is not None:
        instantiate(project.demo).ensure()
    every = select_slides(project, str(cfg.slides), backend)
    slides = slide_part(every, cfg.get("part"))
    if cfg.get("part"):
        print(f"Part {cfg.part}: {len(slides)} of {len(every)} slides")
    mpps = slide_mpps(project)  # bad values stop here, before any tile is extracted
    start = time.perf_counter()
    report = extract_slides(
        slides,
        Path(project.shards_dir),
        settings,
        workers=int(cfg.workers),
        mpp_override=project.get("mpp_override"),
        progress=bool(cfg.progress),
        backend=backend,
        thumbnails=bool(cfg.thumbnails),
        mpp_by_slide=mpps,
    )
    folder = Path(project.shards_dir) / settings.key
    print(f"Shards: {folder}\nReport: {folder / REPORT_NAME}")
    if cfg.get("part"):  # every part merges its rows into the one report
        print(f"The report lists {len(read_report(folder))} slide(s) of the parts that ran so far")
    print(summarize(report, seconds=time.perf_counter() - start))
    return int((report["status"] == "failed").sum())


def select_slides(project: DictConfig, which: str, backend: str | None = None) -> dict[str, Path | None]:
    """Slide name -> file for the slides to extract.

    Args:
        project: The project config (slides_dir, annotations).
        which: ``"annotated"``: the slides named in ``project.annotations`` (None for those
            without a file, reported as failed); every file of the folder when there is no
            annotations file. ``"all"``: every slide file of ``project.slides_dir``.
        backend: The slide reader (``dataset.backend``); its extensions decide what a slide file is.
            Slides in a format only another backend reads are included too: their extraction
            fails with a message naming the file and the backend to use.

    Raises:
        ValueError: `which` is not one of ``annotated``, ``all``, or `backend` is unknown.
        AnnotationError: the annotations file cannot be read or has no ``slide`` column.
    """
    if which not in SLIDE_CHOICES:
        raise ValueError(f"slides={which!r}; choose one of {list(SLIDE_CHOICES)}")
    extensions = reader_class(backend).extensions
    found = find_slides(project.slides_dir, extensions)
    found = dict(sorted({**unreadable_slides(project.slides_dir, extensions), **found}.items()))
    annotations = project.get("annotations")
    if which == "all" or not annotations or not Path(annotations).is_file():
        return dict(found)
    names = read_annotations(annotations, required=("slide",))["slide"].dropna()  # as train.py reads it
    return {name: found.get(name) for name in dict.fromkeys(names)}


def slide_mpps(project: DictConfig) -> dict[str, float]:
    """Slide name -> MPP from the ``project.mpp_column`` of ``project.annotations`` (none when unset).

    Raises:
        AnnotationError: the column is set without an annotations file, is not a column, or holds a
            value that is not a positive number (naming the slide and the column).
    """
    column = project.get("mpp_column")
    if not column:
        return {}
    annotations = project.get("annotations")
    if not annotations or not Path(annotations).is_file():
        raise AnnotationError(f"project.mpp_column={column!r} needs an annotations file; got {annotations!r}")
    table = read_annotations(annotations, required=("slide",))
    return parse_mpp_column(table, str(column), source=str(annotations))
