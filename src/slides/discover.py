"""Find slide files in a folder and name them."""

from __future__ import annotations

from pathlib import Path

from src.slides.reader import slide_name

SLIDE_EXTENSIONS = frozenset({"svs", "tif", "tiff", "ndpi", "scn", "mrxs", "bif", "vms"})


def find_slides(slides_dir: str | Path) -> dict[str, Path]:
    """Map slide name to path for every slide file directly inside `slides_dir`.

    Extensions (case-insensitive): svs, tif, tiff, ndpi, scn, mrxs, bif, vms.

    Args:
        slides_dir: The folder holding the slides.

    Returns:
        ``{slide name: path}`` sorted by name.

    Raises:
        FileNotFoundError: `slides_dir` is not a folder.
        ValueError: Two files share a slide name (e.g. ``a.svs`` and ``a.tiff``).
    """
    folder = Path(slides_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Slides folder not found: {folder}")
    slides: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix[1:].lower() not in SLIDE_EXTENSIONS:
            continue
        name = slide_name(path)
        if name in slides:
            raise ValueError(f"Duplicate slide name {name!r}: {slides[name]} and {path}; rename one of them.")
        slides[name] = path
    return dict(sorted(slides.items()))
