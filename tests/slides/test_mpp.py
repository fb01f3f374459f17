"""resolve_mpp: override, vendor keys in order, screen-default resolutions treated as missing."""

from __future__ import annotations

import pytest

from src.slides.mpp import resolve_mpp
from src.slides.reader import SlideError


def test_override_wins_and_must_be_positive() -> None:
    assert resolve_mpp("a.svs", {"aperio.MPP": "0.25"}, 0.5) == 0.5
    with pytest.raises(SlideError, match=r"mpp_override must be > 0 for slide a\.svs"):
        resolve_mpp("a.svs", {}, 0.0)


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"tiffslide.mpp-x": 0.25, "openslide.mpp-x": "0.5"}, 0.25),
        ({"openslide.mpp-x": "0.5", "aperio.MPP": "0.499"}, 0.5),
        ({"tiffslide.mpp-x": None, "openslide.mpp-x": "nan", "aperio.MPP": "0.499"}, 0.499),
        ({"tiff.XResolution": "40000", "openslide.mpp-x": "0.25"}, 0.25),  # a real scan's tags
    ],
)
def test_first_usable_key(properties: dict, expected: float) -> None:
    assert resolve_mpp("a.svs", properties, None) == pytest.approx(expected)


@pytest.mark.parametrize(
    "properties",
    [{}, {"aperio.MPP": "-1"}, {"tiff.XResolution": "28.3", "openslide.mpp-x": "352.8"}],  # 72 dpi default
)
def test_no_usable_mpp_names_the_slide_and_the_fix(properties: dict) -> None:
    with pytest.raises(SlideError, match=r"Slide b\.tiff has no usable.*mpp_override"):
        resolve_mpp("b.tiff", properties, None)
