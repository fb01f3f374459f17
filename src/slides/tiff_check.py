"""Whether a TIFF-based slide file (SVS, generic TIFF, NDPI...) is whole: every page and its image data inside it.

A file cut short (an interrupted copy or download) is not refused by tifffile: it logs what it cannot read on
its own logger (``invalid page offset 949030``, ``invalid offset to first page 1275950``) and carries on with
the pages it could read. A truncated SVS then opens with fewer levels and extracts from zeros, or fails with
``index 0 out of range(0)`` and a stray tifffile line in the log. `quiet_tifffile` keeps tifffile's lines
out of the log while this thread opens a slide (they go into the message instead), and `tiff_damage` says
whether, and where, the file is cut short.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF, both byte orders
TIFFFILE_LOGGER = "tifffile"
_PAGE_OFFSET = re.compile(r"invalid (?:page offset|offset to first page) (\d+)")


class _ThreadCapture(logging.Filter):
    """Takes tifffile's records out of the log in the threads that asked for it (others are untouched)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        messages = getattr(self.local, "messages", None)
        if messages is None:
            return True
        messages.append(record.getMessage())
        return False


_CAPTURE = _ThreadCapture()


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[list[str]]:
    """Collect what tifffile logs in this thread during the block, instead of logging it.

    Yields:
        The list the messages are appended to.
    """
    logging.getLogger(TIFFFILE_LOGGER).addFilter(_CAPTURE)  # once: a filter is added only if absent
    previous = getattr(_CAPTURE.local, "messages", None)
    messages: list[str] = []
    _CAPTURE.local.messages = messages
    try:
        yield messages
    finally:
        _CAPTURE.local.messages = previous


def is_tiff(path: str | Path) -> bool:
    """Whether the file starts like a TIFF (or BigTIFF)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in TIFF_MAGIC
    except OSError:
        return False


def tiff_damage(path: str | Path, tif: Any = None, messages: Sequence[str] = ()) -> str | None:
    """Why a TIFF slide file is not whole, or None.

    Args:
        path: The file.
        tif: Its open ``tifffile.TiffFile`` (every page is checked: its image data must lie inside the file);
            None: only `messages` are read.
        messages: What tifffile logged while opening it (`quiet_tifffile`): a page that starts past the end.

    Returns:
        E.g. ``"it has 969,477 bytes but a page starts at byte 1,275,950"``, or None.
    """
    size = os.path.getsize(path)
    for page in tif.pages if tif is not None else ():  # reading the pages may log more messages
        counts = np.asarray(page.databytecounts or (), np.int64)
        offsets = np.asarray(page.dataoffsets or (), np.int64)
        if counts.size and offsets.size == counts.size:
            end = int((offsets + counts)[counts > 0].max(initial=0))
            if end > size:
                return f"it has {size:,} bytes but the image data of its page {page.index} runs to byte {end:,}"
    for message in messages:
        match = _PAGE_OFFSET.search(message)
        if match and int(match[1]) >= size:
            return f"it has {size:,} bytes but a page starts at byte {int(match[1]):,}"
    return None


def file_damage(path: str | Path) -> str | None:
    """`tiff_damage` of a file opened here with tifffile (None for a file that is not a TIFF, or whole)."""
    if not is_tiff(path):
        return None
    import tifffile

    with quiet_tifffile() as messages:
        try:
            with tifffile.TiffFile(path) as tif:
                return tiff_damage(path, tif, messages)
        except Exception:
            return tiff_damage(path, None, messages)


def truncated_message(path: str | Path, damage: str) -> str:
    """The error for a slide file that is cut short: names the file, says what is wrong and what to do."""
    return (
        f"Slide file {path} is truncated or corrupt: {damage}. It was probably cut short by an interrupted copy "
        "or download: copy it again from its source"
    )
