"""Microns per pixel of a slide: a per-slide value (annotation column), the file's own, or an override.

Precedence, for every slide: a value from ``project.mpp_column`` (for cohorts whose files record a wrong
MPP) replaces the file's own; otherwise the file's own MPP is used; ``project.mpp_override`` only fills
in for a file that records none. `MppChoice` is that choice for one slide, and tells whether a shard
index was extracted at the MPP it gives (so that a rerun with other values re-extracts the slide).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src.command_keys import config_key
from src.errors import AnnotationError
from src.slides.reader import SlideError

log = logging.getLogger(__name__)

# MPP recovered only from TIFF resolution tags at or above this value is a screen or print
# default (72 dpi = 352.8 um/px, 300 dpi = 84.7 um/px), not a microscope scan: treat it as missing.
MAX_TAG_MPP = 20.0

# Where backends put the MPP, in order of trust: tiffslide's, OpenSlide's, the Aperio header's.
MPP_KEYS = ("tiffslide.mpp-x", "openslide.mpp-x", "aperio.MPP")

# Where the MPP a shard was extracted at came from (the index's "mpp_source").
MPP_SOURCES = ("column", "slide", "override")

_override_unused: set[str] = set()  # slides already logged as not using the override (once per process)


def file_mpp(properties: Mapping[str, Any]) -> float | None:
    """The MPP the slide file records: the first usable value of `MPP_KEYS`, else None.

    A value that came only from TIFF resolution tags (``tiff.XResolution`` is among the
    properties: tiffslide sets it only then, OpenSlide whenever the tag exists) and is at least
    `MAX_TAG_MPP` is a screen or print default, so the file counts as having no MPP.

    Args:
        properties: The reader's vendor properties (values as read or as strings).
    """
    from_tags = "tiff.XResolution" in properties
    for key in MPP_KEYS:
        value = properties.get(key)
        try:
            mpp = float(value) if value is not None else None
        except (TypeError, ValueError):
            mpp = None
        if mpp is None or not np.isfinite(mpp) or mpp <= 0:
            continue
        if from_tags and mpp >= MAX_TAG_MPP:
            return None
        return mpp
    return None


def resolve_mpp(
    path: str | Path, properties: Mapping[str, Any], mpp_override: float | None, mpp: float | None = None
) -> float:
    """Pick the slide's MPP: `mpp`, else the file's own (`file_mpp`), else `mpp_override`, else fail.

    When the file has its own MPP and `mpp_override` is set, the file's MPP is used and a warning
    says so, once per slide and process.

    Args:
        path: The slide file (named in errors).
        properties: The reader's vendor properties.
        mpp_override: Microns per pixel for a file that records none (``project.mpp_override``, predict.py's
            ``mpp_override``); > 0.
        mpp: Microns per pixel that replaces the file's own (``project.mpp_column``); > 0.

    Returns:
        Microns per level-0 pixel.

    Raises:
        SlideError: `mpp` or `mpp_override` is not > 0, or the file has no usable MPP and no override.
    """
    if mpp is not None:
        if not _positive(mpp):
            raise SlideError(f"The MPP given for slide {path} must be a positive number (µm/px), got {mpp!r}")
        return float(mpp)
    if mpp_override is not None and not _positive(mpp_override):
        raise SlideError(f"mpp_override must be > 0 for slide {path}, got {mpp_override}")
    own = file_mpp(properties)
    if own is not None:
        if mpp_override is not None and str(path) not in _override_unused:
            _override_unused.add(str(path))
            override_key, column_key = config_key("mpp_override"), config_key("mpp_column")
            replaces = f"; {column_key} replaces a slide's" if column_key else ""
            log.warning(
                "%s=%s is not used for slide %s: the file has its own MPP %.4g µm/px "
                "(%s only fills in a missing MPP%s)",
                override_key, mpp_override, path, own, override_key, replaces,
            )  # fmt: skip
        return own
    if mpp_override is not None:
        return float(mpp_override)
    raise SlideError(
        f"Slide {path} has no usable microns-per-pixel (MPP) in its metadata; "
        f"set it with {config_key('mpp_override')}=<µm per pixel> (e.g. {config_key('mpp_override')}=0.5)."
    )


def mpp_source(
    used: float, properties: Mapping[str, Any], mpp: float | None = None, mpp_override: float | None = None
) -> str:
    """Where an opened slide's MPP came from: ``"column"``, ``"slide"`` (the file's own) or ``"override"``.

    Args:
        used: The reader's MPP.
        properties: The reader's vendor properties.
        mpp: The per-slide value the reader was given, if any.
        mpp_override: The override the reader was given, if any.
    """
    if mpp is not None:
        return "column"
    if mpp_override is not None and file_mpp(properties) is None and math.isclose(used, mpp_override, rel_tol=1e-6):
        return "override"
    return "slide"  # also a custom backend's own MPP found outside MPP_KEYS


@dataclass(frozen=True)
class MppChoice:
    """How a run sets one slide's MPP.

    Attributes:
        mpp: The slide's value from ``project.mpp_column`` (replaces the file's own); None = none given.
        override: ``project.mpp_override``, for a file that records no MPP; None = none.
    """

    mpp: float | None = None
    override: float | None = None

    def matches(self, index: Mapping[str, Any]) -> bool:
        """Whether a complete shard index was extracted at the MPP this choice gives its slide.

        The index records the MPP used (``mpp``) and where it came from (``mpp_source``); the
        slide file is assumed unchanged (`src.extraction.shards.read_index` checks that), so its
        own MPP is too. An index written before ``mpp_source`` was recorded matches only when no
        override or column value is set now, or the column value equals its MPP.
        """
        recorded = index.get("mpp")
        if not isinstance(recorded, int | float):
            return False
        if self.mpp is not None:
            return math.isclose(recorded, self.mpp, rel_tol=1e-6)
        source = index.get("mpp_source")
        if source == "slide":
            return True  # the file's own MPP; an override does not apply to it
        if source == "override":
            return self.override is not None and math.isclose(recorded, self.override, rel_tol=1e-6)
        if source is None:
            return self.override is None
        return False  # "column": that value is no longer given, the slide falls back to its own or the override


def parse_mpp_column(table: Any, column: str, source: str = "annotations") -> dict[str, float]:
    """Per-slide MPP from an annotation column: ``{slide: µm/px}`` for every slide with a value.

    Args:
        table: The annotations (a pandas DataFrame with a ``slide`` column).
        column: The column (``project.mpp_column``); a blank value means "use the file's own MPP".
        source: Where the table came from, for error messages.

    Raises:
        AnnotationError: the column is missing, or a value is not a positive number (naming the
            slide, the column and the value).
    """
    if column not in table.columns:
        raise AnnotationError(
            f"{source}: project.mpp_column={column!r} is not an annotation column; columns are {list(table.columns)}"
        )
    mpps: dict[str, float] = {}
    for slide, raw in zip(table["slide"], table[column], strict=True):
        if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == "":
            continue
        try:
            value = float(str(raw).strip())
        except ValueError:
            value = float("nan")
        if not _positive(value):
            raise AnnotationError(
                f"{source}: slide {slide!r} has {column}={raw!r}; project.mpp_column={column!r} values must be "
                "positive numbers (microns per pixel), or blank to use the slide file's own MPP"
            )
        mpps[str(slide)] = value
    return mpps


def _positive(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number > 0
