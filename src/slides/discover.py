"""Find slide files in a folder, name them, and say which reader can open a format the chosen one cannot.

A slide is a file with one of the reader's extensions, or (when the reader declares ``dcm``) a folder
holding DICOM (``.dcm``) files: one DICOM WSI, named after the folder and opened through its first
``.dcm`` file (OpenSlide finds the rest of the series next to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from src.slides.formats import DICOM_EXTENSION, dicom_file, file_extension, reads_format, slide_format
from src.slides.reader import format_readers, reader_class, slide_name, unsupported_format

# also importable from here, where callers found them before they moved to src.slides.formats / reader
__all__ = [
    "DICOM_EXTENSION",
    "dicom_file",
    "find_slides",
    "format_readers",
    "reads_format",
    "slide_format",
    "unreadable_slides",
    "unsupported_format",
]


def find_slides(slides_dir: str | Path, extensions: Iterable[str] | None = None) -> dict[str, Path]:
    """Map slide name to path for every slide directly inside `slides_dir`.

    Args:
        slides_dir: The folder holding the slides.
        extensions: File extensions to pick up (case-insensitive, with or without the dot),
            usually ``reader_class(backend).extensions``; None = the tiffslide backend's
            (svs, tif, tiff, qptiff, ndpi, scn, bif). With ``dcm`` among them, a folder of
            ``.dcm`` files is one slide named after the folder, its path the folder's first
            ``.dcm`` file.

    Returns:
        ``{slide name: path}`` sorted by name.

    Raises:
        FileNotFoundError: `slides_dir` is not a folder.
        ValueError: Two slides share a name (e.g. ``a.svs`` and ``a.tiff``).
    """
    wanted = reader_class(None).extensions if extensions is None else extensions
    return _collect(slides_dir, {ext.lower().lstrip(".") for ext in wanted}, check_duplicates=True)


def unreadable_slides(slides_dir: str | Path, extensions: Iterable[str]) -> dict[str, Path]:
    """The slides of `slides_dir` in a format that a shipped backend reads but `extensions` exclude.

    These are the slides `find_slides` leaves out although they are slides, e.g. a ``.mrxs`` file
    or a DICOM folder for the tiffslide backend.

    Returns:
        ``{slide name: path}`` sorted by name (a name `find_slides` also finds is left out).
    """
    wanted = {ext.lower().lstrip(".") for ext in extensions}
    others = set(format_readers()) - wanted
    found = _collect(slides_dir, wanted, check_duplicates=False)
    return {name: path for name, path in _collect(slides_dir, others, False).items() if name not in found}


def _collect(slides_dir: str | Path, wanted: set[str], check_duplicates: bool) -> dict[str, Path]:
    folder = Path(slides_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Slides folder not found: {folder}")
    slides: dict[str, Path] = {}
    for name, path, entry in _candidates(folder, DICOM_EXTENSION in wanted):
        if file_extension(path) not in wanted:
            continue
        if name in slides:
            if not check_duplicates:
                continue
            raise ValueError(f"Duplicate slide name {name!r}: {slides[name]} and {entry}; rename one of them.")
        slides[name] = path
    return dict(sorted(slides.items()))


def _candidates(folder: Path, dicom_folders: bool) -> Iterator[tuple[str, Path, Path]]:
    """``(slide name, path to open, folder entry)`` for each file, and each DICOM folder if asked."""
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            yield slide_name(entry), entry, entry
        elif dicom_folders and entry.is_dir():
            first = dicom_file(entry)
            if first is not None:
                yield entry.name, first, entry
