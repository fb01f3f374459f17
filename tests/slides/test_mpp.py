"""resolve_mpp: column value, file's own, override; vendor keys in order; screen defaults as missing."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from src.errors import AnnotationError
from src.slides.mpp import MppChoice, mpp_source, parse_mpp_column, resolve_mpp
from src.slides.reader import SlideError


def test_override_fills_only_a_missing_mpp_and_must_be_positive(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_mpp("no_mpp.svs", {}, 0.5) == 0.5
    with caplog.at_level(logging.WARNING, logger="src.slides.mpp"):
        assert resolve_mpp("own.ndpi", {"tiffslide.mpp-x": 0.228}, 0.5) == pytest.approx(0.228)
        assert resolve_mpp("own.ndpi", {"tiffslide.mpp-x": 0.228}, 0.5) == pytest.approx(0.228)
    unused = [r.getMessage() for r in caplog.records if "not used for slide own.ndpi" in r.getMessage()]
    assert len(unused) == 1 and "0.228" in unused[0]  # said once per slide
    with pytest.raises(SlideError, match=r"mpp_override must be > 0 for slide a\.svs"):
        resolve_mpp("a.svs", {}, 0.0)


def test_a_column_value_replaces_the_files_own() -> None:
    assert resolve_mpp("a.svs", {"aperio.MPP": "0.25"}, 0.5, mpp=0.3) == 0.3
    assert resolve_mpp("b.tiff", {}, None, mpp=0.3) == 0.3
    with pytest.raises(SlideError, match=r"a\.svs must be a positive number"):
        resolve_mpp("a.svs", {}, None, mpp=-1.0)


def test_parse_mpp_column_blank_means_own_and_bad_values_name_slide_and_column() -> None:
    table = pd.DataFrame({"slide": ["a", "b", "c", "d"], "scan_mpp": [0.25, None, " ", "0.5"]})
    assert parse_mpp_column(table, "scan_mpp") == {"a": 0.25, "d": 0.5}
    for bad in ("abc", "0", "-0.5", "inf"):
        with pytest.raises(AnnotationError, match=rf"slide 'b' has scan_mpp='{bad}'.*positive numbers"):
            parse_mpp_column(table.assign(scan_mpp=["0.25", bad, "", ""]), "scan_mpp")
    with pytest.raises(AnnotationError, match=r"project.mpp_column='mpp' is not an annotation column"):
        parse_mpp_column(table, "mpp")


def test_mpp_source() -> None:
    own = {"aperio.MPP": "0.25"}
    assert mpp_source(0.3, own, mpp=0.3, mpp_override=0.5) == "column"
    assert mpp_source(0.25, own, mpp_override=0.5) == "slide"
    assert mpp_source(0.5, {}, mpp_override=0.5) == "override"
    assert mpp_source(0.7, {}, mpp_override=None) == "slide"  # e.g. a custom backend's own metadata
    assert mpp_source(0.7, {}, mpp_override=0.5) == "slide"


@pytest.mark.parametrize(
    ("index", "choice", "matches"),
    [
        ({"mpp": 0.5, "mpp_source": "slide"}, MppChoice(None, 0.25), True),  # the override does not apply
        ({"mpp": 0.5, "mpp_source": "slide"}, MppChoice(0.25, None), False),  # a column value now
        ({"mpp": 0.25, "mpp_source": "slide"}, MppChoice(0.25, None), True),  # the same value: same tiles
        ({"mpp": 0.5, "mpp_source": "override"}, MppChoice(None, 0.5), True),
        ({"mpp": 0.5, "mpp_source": "override"}, MppChoice(None, 1.0), False),
        ({"mpp": 0.5, "mpp_source": "override"}, MppChoice(None, None), False),
        ({"mpp": 0.3, "mpp_source": "column"}, MppChoice(0.3, None), True),
        ({"mpp": 0.3, "mpp_source": "column"}, MppChoice(None, None), False),  # back to the file's own
        ({"mpp": 0.5}, MppChoice(None, None), True),  # an index from before mpp_source
        ({"mpp": 0.5}, MppChoice(None, 0.5), False),  # ... cannot say whether an old override made it
        ({}, MppChoice(None, None), False),
    ],
)
def test_mpp_choice_matches_an_index(index: dict, choice: MppChoice, matches: bool) -> None:
    assert choice.matches(index) is matches


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
