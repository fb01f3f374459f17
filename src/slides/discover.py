"""Find slide files in a folder, name them, and say which reader can open a format the chosen one cannot.

A slide is a file with one of the reader's extensions, or (when the reader declares ``dcm``) a folder
holding DICOM (``.dcm``) files: one DICOM WSI, named after the folder and opened through its first
``.dcm`` file (OpenSlide finds the rest of the series next to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from src.command_keys import config_key
from src.slides.reader import reader_class, shipped_backends, slide_name

DICOM_EXTENSION = "dcm"


def dicom_file(folder: str | Path) -> Path | None:
    """The first ``.dcm`` file (by name, any case) directly inside `folder`, or None."""
    try:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file() and _extension(p) == DICOM_EXTENSION)
    except OSError:
        return None
    return files[0] if files else None


def format_readers() -> dict[str, list[str]]:
    """File extension (lower case, no dot) -> the shipped backends that read it."""
    readers: dict[str, list[str]] = {}
    for backend in shipped_backends():
        for extension in reader_class(backend).extensions:
            readers.setdefault(extension, []).append(backend)
    return readers


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


def unsupported_format(path: str | Path, backend: str) -> str:
    """The error for a slide whose format `backend` does not read, naming the file and the backends that do.

    Every command says this for such a slide (:func:`~src.slides.reader.open_slide` raises it), with the
    running command's key for the backend (``dataset.backend=`` or predict.py's ``backend=``).
    """
    extension = slide_format(path)
    readers = [name for name in format_readers().get(extension, []) if name != backend]
    key = config_key("backend")
    fix = f"use {' or '.join(f'{key}={name}' for name in readers)}" if readers else "no shipped backend reads it"
    return f"unsupported format for backend {backend}: {path}; {fix}"


def slide_format(path: str | Path) -> str:
    """A slide's format: its file extension (lower case, no dot); ``dcm`` for a folder of DICOM files."""
    path = Path(path)
    if path.is_dir() and dicom_file(path) is not None:
        return DICOM_EXTENSION
    return _extension(path)


def reads_format(extensions: Iterable[str], path: str | Path) -> bool:
    """Whether a reader with these `extensions` reads the slide at `path` (see `slide_format`)."""
    return slide_format(path) in {ext.lower().lstrip(".") for ext in extensions}


def _collect(slides_dir: str | Path, wanted: set[str], check_duplicates: bool) -> dict[str, Path]:
    folder = Path(slides_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Slides folder not found: {folder}")
    slides: dict[str, Path] = {}
    for name, path, entry in _candidates(folder, DICOM_EXTENSION in wanted):
        if _extension(path) not in wanted:
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


def _extension(path: Path) -> str:
    return path.suffix[1:].lower()
