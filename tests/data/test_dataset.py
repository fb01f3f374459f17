"""Dataset.slide_paths: slides in a format the backend does not read are named as such, not as missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from src.data.dataset import Dataset
from src.errors import AnnotationError


def _annotated(*slides: str) -> pd.DataFrame:
    return pd.DataFrame({"patient": [f"p{i}" for i in range(len(slides))], "slide": list(slides)})


def test_a_dicom_folder_is_a_slide_for_openslide_and_unsupported_for_tiffslide(tmp_path: Path) -> None:
    (tmp_path / "case 7").mkdir()
    (tmp_path / "case 7" / "0001.dcm").write_bytes(b"\0" * 128 + b"DICM")  # not a real DICOM WSI
    (tmp_path / "a.svs").touch()
    table = _annotated("a", "case 7")
    paths = Dataset(table, slides_dir=tmp_path, backend="openslide").slide_paths()
    assert paths == {"a": tmp_path / "a.svs", "case 7": tmp_path / "case 7" / "0001.dcm"}
    with pytest.raises(AnnotationError) as error:
        Dataset(table, slides_dir=tmp_path).slide_paths()
    assert str(error.value) == (
        f"slide 'case 7': unsupported format for backend tiffslide: {tmp_path / 'case 7' / '0001.dcm'}; "
        "use dataset.backend=openslide"
    )


def test_unsupported_and_missing_slides_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "m.mrxs").touch()
    (tmp_path / "q.qptiff").touch()
    table = _annotated("m", "q", "ghost")
    with pytest.raises(AnnotationError) as error:
        Dataset(table, slides_dir=tmp_path, backend="openslide").slide_paths()
    message = str(error.value)
    expected = f"unsupported format for backend openslide: {tmp_path / 'q.qptiff'}; use dataset.backend=tiffslide"
    assert expected in message
    assert "1 slide(s) listed in the annotations are missing" in message and "['ghost']" in message
    assert "m.mrxs" not in message  # OpenSlide reads it
