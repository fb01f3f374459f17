"""Command line: ``python -m src.extraction [project=...] [tiles=...] [workers=N] [slides=all] [dataset.backend=...]``.

Builds the demo project when the project config has a ``demo`` generator, extracts the slides
of ``project.slides_dir`` (those named in ``project.annotations`` by default) into
``project.shards_dir``, prints a summary and exits 1 when any slide failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.config import register_configs, validate
from src.config.schema import SlideChoice
from src.extraction.extract import extract_slides
from src.extraction.report import REPORT_NAME, summarize
from src.extraction.settings import TileSettings
from src.slides.discover import find_slides
from src.slides.reader import reader_class

SLIDE_CHOICES = tuple(choice.value for choice in SlideChoice)

register_configs()  # resolvers and schemas, before Hydra composes


def select_slides(project: DictConfig, which: str, backend: str | None = None) -> dict[str, Path | None]:
    """Slide name -> file for the slides to extract.

    Args:
        project: The project config (slides_dir, annotations).
        which: ``"annotated"``: the slides named in ``project.annotations`` (None for those
            without a file, reported as failed); every file of the folder when there is no
            annotations file. ``"all"``: every slide file of ``project.slides_dir``.
        backend: The slide reader (``dataset.backend``); its extensions decide what a slide file is.

    Raises:
        ValueError: `which` is not one of ``annotated``, ``all``, or `backend` is unknown.
    """
    if which not in SLIDE_CHOICES:
        raise ValueError(f"slides={which!r}; choose one of {list(SLIDE_CHOICES)}")
    found = find_slides(project.slides_dir, reader_class(backend).extensions)
    annotations = project.get("annotations")
    if which == "all" or not annotations or not Path(annotations).is_file():
        return dict(found)
    names = pd.read_csv(annotations, dtype=str)["slide"].dropna().str.strip()
    return {name: found.get(name) for name in dict.fromkeys(names)}


@hydra.main(version_base="1.3", config_path="../../conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    """Run extraction for the composed config; exit with status 1 when a slide failed."""
    validate(cfg)  # fail on bad settings before any I/O
    settings = TileSettings.from_config(cfg.tiles)
    backend = cfg.dataset.get("backend")
    reader_class(backend)  # and on an unknown backend
    project = cfg.project
    if project.get("demo") is not None:
        instantiate(project.demo).ensure()
    slides = select_slides(project, str(cfg.slides), backend)
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
    )
    folder = Path(project.shards_dir) / settings.key
    print(f"Shards: {folder}\nReport: {folder / REPORT_NAME}")
    print(summarize(report, seconds=time.perf_counter() - start))
    if (report["status"] == "failed").any():
        sys.exit(1)  # SystemExit passes through Hydra's error handling


if __name__ == "__main__":
    main()
