"""A slide's format, from its path alone: the file extension, or ``dcm`` for a folder of DICOM files.

Which backend reads which format is the backends' business (:func:`src.slides.reader.format_readers`); this
module only looks at paths, so that every other module of ``src.slides`` can use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DICOM_EXTENSION = "dcm"


def file_extension(path: str | Path) -> str:
    """The file extension, lower case, without the dot (``""`` for none)."""
    return Path(path).suffix[1:].lower()


def dicom_file(folder: str | Path) -> Path | None:
    """The first ``.dcm`` file (by name, any case) directly inside `folder`, or None."""
    try:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file() and file_extension(p) == DICOM_EXTENSION)
    except OSError:
        return None
    return files[0] if files else None


def slide_format(path: str | Path) -> str:
    """A slide's format: its file extension (lower case, no dot); ``dcm`` for a folder of DICOM files."""
    path = Path(path)
    if path.is_dir() and dicom_file(path) is not None:
        return DICOM_EXTENSION
    return file_extension(path)


def reads_format(extensions: Iterable[str], path: str | Path) -> bool:
    """Whether a reader with these `extensions` reads the slide at `path` (see `slide_format`)."""
    return slide_format(path) in {ext.lower().lstrip(".") for ext in extensions}
