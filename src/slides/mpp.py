"""Microns per pixel of a slide, from an override or the reader's properties."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from src.slides.reader import SlideError

# MPP recovered only from TIFF resolution tags at or above this value is a screen or print
# default (72 dpi = 352.8 um/px, 300 dpi = 84.7 um/px), not a microscope scan: treat it as missing.
MAX_TAG_MPP = 20.0

# Where backends put the MPP, in order of trust: tiffslide's, OpenSlide's, the Aperio header's.
MPP_KEYS = ("tiffslide.mpp-x", "openslide.mpp-x", "aperio.MPP")


def resolve_mpp(path: str | Path, properties: Mapping[str, Any], mpp_override: float | None) -> float:
    """Pick the slide's MPP: `mpp_override`, else the first usable value of `MPP_KEYS`, else fail.

    A value that came only from TIFF resolution tags (``tiff.XResolution`` is among the
    properties: tiffslide sets it only then, OpenSlide whenever the tag exists) and is at least
    `MAX_TAG_MPP` is a screen or print default, so the slide counts as having no MPP.

    Args:
        path: The slide file (named in errors).
        properties: The reader's vendor properties.
        mpp_override: Microns per pixel that replaces the file's own; must be > 0.

    Returns:
        Microns per level-0 pixel.

    Raises:
        SlideError: `mpp_override` is not > 0, or the slide has no usable MPP and no override.
    """
    if mpp_override is not None:
        if not mpp_override > 0:
            raise SlideError(f"mpp_override must be > 0 for slide {path}, got {mpp_override}")
        return float(mpp_override)
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
            break
        return mpp
    raise SlideError(
        f"Slide {path} has no usable microns-per-pixel (MPP) in its metadata; "
        "pass mpp_override (e.g. project.mpp_override=0.5) to set it."
    )
