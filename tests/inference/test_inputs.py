"""Which slides a prediction reads: slides= decides, annotations= only adds each slide's row (item 22 of issue 20:
a cohort file with three slide files predicted three slides and reported the other 119 rows as failed)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from src.errors import AnnotationError
from src.inference.inputs import check_rows, slide_inputs

COHORT = [f"s{i}" for i in range(8)]


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with slide files s0-s2 (empty files: nothing here opens them) and a cohort CSV of s0-s7."""
    folder = tmp_path / "slides"
    folder.mkdir()
    for name in COHORT[:3]:
        (folder / f"{name}.svs").touch()
    table = pd.DataFrame({"slide": COHORT, "patient": [f"p{i}" for i in range(8)], "label": list("ab") * 4})
    table.to_csv(tmp_path / "cohort.csv", index=False)
    return folder, tmp_path / "cohort.csv"


def test_listed_slides_are_the_request_and_the_cohort_gives_their_rows(
    cohort: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder, csv = cohort
    files = [str(folder / f"{name}.svs") for name in ("s2", "s0")]
    with caplog.at_level(logging.INFO, logger="src.inference.inputs"):
        slides, table = slide_inputs(files, str(csv), None, "tiffslide")
    assert [s.name for s in slides] == ["s0", "s2"]
    assert all(s.path is not None for s in slides)  # no slide without a file: none is reported failed
    assert [s.patient for s in slides] == ["p0", "p2"]
    assert table.slide.tolist() == ["s0", "s2"]  # only their rows are checked and evaluated
    assert "6 annotation row(s) of" in caplog.text and "name no slide given in slides=" in caplog.text
    check_rows(slides, str(csv), "the evaluation of outcomes=['label']")  # every slide has its row


def test_a_listed_slide_without_a_row_stops_only_when_its_row_is_needed(
    cohort: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder, csv = cohort
    (tmp_path / "extra.svs").touch()
    slides, _ = slide_inputs([str(folder / "s1.svs"), str(tmp_path / "extra.svs")], str(csv), None, None)
    assert [(s.name, len(s.row)) for s in slides] == [("extra", 0), ("s1", 1)]
    with pytest.raises(AnnotationError, match=r"cohort\.csv has no row for slide\(s\) \['extra'\] of slides= "
                       r"\(1 in all\), and the evaluation of outcomes=\['label'\] needs one"):  # fmt: skip
        check_rows(slides, str(csv), "the evaluation of outcomes=['label']")
    with caplog.at_level(logging.WARNING, logger="src.inference.inputs"):
        check_rows(slides, str(csv), "")  # nothing needs it: predicted, without a patient
    assert "No row in" in caplog.text and "['extra']: predicted without a patient" in caplog.text


def test_a_folder_predicts_the_slides_it_has_that_the_cohort_names(
    cohort: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder, csv = cohort
    (folder / "unlisted.svs").touch()
    with caplog.at_level(logging.WARNING, logger="src.inference.inputs"):
        slides, table = slide_inputs(str(folder), str(csv), None, None)
    assert [s.name for s in slides] == ["s0", "s1", "s2"] and all(s.path is not None for s in slides)
    assert table.slide.tolist() == ["s0", "s1", "s2"]
    assert f"5 annotation row(s) of {csv} name no slide in {folder}" in caplog.text  # a folder: a warning


def test_a_cohort_given_as_slides_is_the_request_and_a_row_without_a_file_fails(cohort: tuple[Path, Path]) -> None:
    folder, csv = cohort
    slides, table = slide_inputs(str(csv), None, str(folder), None)
    assert [s.name for s in slides] == COHORT and len(table) == len(COHORT)
    assert [s.name for s in slides if s.path is None] == COHORT[3:]  # reported as failed, by name
