"""An annotations file reads the same whatever Excel did to it: spaces around values do not make classes,
the common encodings are read (or named in the error), and a blank outcome is never dropped unannounced."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from src.commands.extract import select_slides
from src.data.annotations import AnnotationError, load_annotations, validate_annotations
from src.data.dataset import Dataset

CSV = """patient,slide,tumor_type,age,stage
p1,s1,adenocarcinoma ,63,II
p2,s2,adenocarcinoma,70 ,III
p3,s3, squamous,  ,II
p4,s4,squamous,58,I
"""


def _write(tmp_path: Path, text: str | bytes, name: str = "annotations.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_spaces_around_an_outcome_value_do_not_make_a_class(tmp_path: Path, caplog) -> None:
    path = _write(tmp_path, CSV)
    with caplog.at_level(logging.WARNING):
        labels, classes = Dataset(path).labels("tumor_type")
    assert classes == ["adenocarcinoma", "squamous"]
    assert [labels[s] for s in ("s1", "s2", "s3", "s4")] == [0, 0, 1, 1]
    warning = caplog.text
    assert str(path) in warning and "'tumor_type': 2" in warning and "'age': 2" in warning
    assert "4 value(s)" in warning and "slide 's1' 'tumor_type': 'adenocarcinoma ' -> 'adenocarcinoma'" in warning


def test_numeric_columns_stay_numeric(tmp_path: Path) -> None:
    table = load_annotations(_write(tmp_path, CSV.replace(",II\n", ",2\n").replace(",III\n", ",3\n")))
    assert pd.api.types.is_float_dtype(table["age"])  # '70 ' is 70 and '  ' is blank, as an empty cell
    assert table["age"].tolist()[:2] == [63, 70] and pd.isna(table["age"][2])
    assert table["stage"].dtype.kind == "O"  # 'I' is text: the column stays text
    untouched = load_annotations(_write(tmp_path, "patient,slide,age\np1,001,63\np2,002,70\n"))
    assert untouched["age"].dtype.kind == "i" and untouched["slide"].tolist() == ["001", "002"]


def test_column_names_lose_their_spaces(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        table = load_annotations(_write(tmp_path, "patient, slide ,tumor_type \np1,007,x\n"))
    assert list(table.columns) == ["patient", "slide", "tumor_type"] and table["slide"][0] == "007"
    assert "[' slide ', 'tumor_type ']" in caplog.text
    with pytest.raises(AnnotationError, match=r"annotations.csv: column name\(s\) \['a'\] appear more than once"):
        load_annotations(_write(tmp_path, "patient,slide,a,a \np1,s1,1,2\n"))


def test_a_table_handed_to_the_dataset_is_stripped_too() -> None:
    table = pd.DataFrame({"patient": ["p1", "p2"], "slide": ["s1", "s2"], "tumor_type": ["a ", "a"]})
    assert validate_annotations(table)["tumor_type"].tolist() == ["a", "a"]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("patient,slide,site\np1,s1,Zürich\n".encode("cp1252"), "cp1252"),
        ("patient,slide,site\np1,s1,Zürich €\n".encode("cp1252"), "cp1252"),
        ("patient,slide,site\np1,s1,Zürich\x81\n".encode("latin-1"), "latin-1"),  # 0x81: not cp1252
    ],
    ids=["cp1252", "cp1252-euro", "latin-1"],
)
def test_latin1_and_cp1252_are_read_with_a_warning(tmp_path: Path, caplog, data: bytes, encoding: str) -> None:
    path = _write(tmp_path, data)
    with caplog.at_level(logging.WARNING):
        table = load_annotations(path)
    assert table["site"][0].startswith("Zürich")
    assert f"{path}: byte 0xfc on line 2 is not UTF-8; read it as {encoding}" in caplog.text


@pytest.mark.parametrize("after_bom", ["Zürich".encode(), "Zürich".encode("cp1252")], ids=["utf-8", "cp1252"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path, after_bom: bytes) -> None:
    path = _write(tmp_path, b"\xef\xbb\xbfpatient,slide,site\np1,s1," + after_bom + b"\n")
    table = load_annotations(path)
    assert list(table.columns) == ["patient", "slide", "site"] and table["site"][0] == "Zürich"


@pytest.mark.parametrize(
    "data",
    ["patient,slide\np1,s1\n".encode("utf-16"), b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"],
    ids=["utf-16", "xlsx"],
)
def test_utf16_or_a_spreadsheet_names_the_file_and_the_encodings(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationError, match=rf"{path}: not a text CSV in UTF-8, cp1252 or Latin-1 .*CSV UTF-8"):
        load_annotations(path)


def test_a_semicolon_separated_file_gets_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "patient;slide;tumor_type\np1;s1;squamous\n")
    with pytest.raises(AnnotationError, match=rf"{path}: missing required column.*separated by semicolons"):
        load_annotations(path)


def test_extract_py_reads_annotations_the_same_way(tmp_path: Path, caplog) -> None:
    (tmp_path / "slides").mkdir()
    path = _write(tmp_path, b"\xef\xbb\xbf" + "patient,slide\np1,café 1 \np2,s2\n".encode("cp1252"))
    project = OmegaConf.create({"slides_dir": str(tmp_path / "slides"), "annotations": str(path)})
    with caplog.at_level(logging.WARNING):
        assert select_slides(project, "annotated") == {"café 1": None, "s2": None}
    assert "read it as cp1252" in caplog.text and "'slide': 1" in caplog.text
    with pytest.raises(AnnotationError, match=r"missing required column\(s\) \['slide'\].*semicolons"):
        select_slides(OmegaConf.merge(project, {"annotations": str(_write(tmp_path, "slide;x\ns1;1\n"))}), "annotated")


def test_the_trainer_api_logs_or_refuses_blank_outcomes(tmp_path: Path, caplog) -> None:
    path = _write(tmp_path, CSV.replace("adenocarcinoma,70", "  ,70").replace("squamous,58", ",58"))
    with caplog.at_level(logging.WARNING):
        labels, _ = Dataset(path).labels("tumor_type")
    assert sorted(labels) == ["s1", "s3"]
    assert "Dropped 2 slide(s) with a blank 'tumor_type': ['s2', 's4']" in caplog.text
    with pytest.raises(AnnotationError, match=rf"{path}: 2 slide\(s\) with a blank 'tumor_type': \['s2', 's4'\]"):
        Dataset(path).labels("tumor_type", outcome_blank="error")
    with pytest.raises(ValueError, match=r"outcome_blank='keep'; choose one of \['drop', 'error'\]"):
        Dataset(path).labels("tumor_type", outcome_blank="keep")


def test_an_annotations_file_without_rows_is_no_slides_naming_the_file(tmp_path: Path) -> None:
    header_only = _write(tmp_path, "patient,slide,tumor_type\n")
    for read in (load_annotations, Dataset):  # train.py, the Trainer API, predict and extraction read it so
        with pytest.raises(AnnotationError, match=rf"{header_only}: no slides: .*\['patient', 'slide', 'tumor_type'\]"):
            read(header_only)
    project = OmegaConf.create({"slides_dir": str(tmp_path), "annotations": str(header_only)})
    with pytest.raises(AnnotationError, match=rf"{header_only}: no slides"):
        select_slides(project, "annotated")
    empty = _write(tmp_path, "", name="empty.csv")
    with pytest.raises(AnnotationError, match=rf"{empty}: no slides: the file is empty"):
        load_annotations(empty)
    with pytest.raises(AnnotationError, match=r"annotations: no slides"):
        Dataset(pd.DataFrame(columns=["patient", "slide"]))


def test_outcomes_blank_on_every_slide_leave_no_slides(tmp_path: Path) -> None:
    path = _write(tmp_path, "patient,slide,tumor_type\np1,s1,\np2,s2, \n")
    with pytest.raises(AnnotationError, match=rf"{path}: no slides left: every one of its 2 slide\(s\) has a blank"):
        Dataset(path).labels("tumor_type")
