"""Find slide files in a folder and name them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from src.slides.reader import reader_class, slide_name


def find_slides(slides_dir: str | Path, extensions: Iterable[str] | None = None) -> dict[str, Path]:
    """Map slide name to path for every slide file directly inside `slides_dir`.

    Args:
        slides_dir: The folder holding the slides.
        extensions: File extensions to pick up (case-insensitive, with or without the dot),
            usually ``reader_class(backend).extensions``; None = the tiffslide backend's
            (svs, tif, tiff, ndpi, scn, bif).

    Returns:
        ``{slide name: path}`` sorted by name.

    Raises:
        FileNotFoundError: `slides_dir` is not a folder.
        ValueError: Two files share a slide name (e.g. ``a.svs`` and ``a.tiff``).
    """
    folder = Path(slides_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Slides folder not found: {folder}")
    wanted = reader_class(None).extensions if extensions is None else extensions
    wanted = {ext.lower().lstrip(".") for ext in wanted}
    slides: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix[1:].lower() not in wanted:
            continue
        name = slide_name(path)
        if name in slides:
            raise ValueError(f"Duplicate slide name {name!r}: {slides[name]} and {path}; rename one of them.")
        slides[name] = path
    return dict(sorted(slides.items()))
