"""The MPP a slide is extracted at (its file's own, project.mpp_override, project.mpp_column) and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from omegaconf import OmegaConf

from src.commands.extract import run, select_slides
from src.demo.render import SlideLook, render_slide
from src.demo.svs import write_svs
from src.errors import AnnotationError
from src.extraction.extract import extract_slides
from src.extraction.report import REPORT_NAME
from src.extraction.shards import read_index, shard_dir
from src.slides.tile_settings import TileSettings
from tests.extraction.cli_helpers import extract_config

SETTINGS = TileSettings(tile_px=64, tile_um=64)
KEY_OVERRIDES = ["tiles.tile_px=64", "tiles.tile_um=64"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``own``: a 768 px SVS at 0.5 µm/px; ``no_mpp``: the same pixels as a tiled TIFF without any MPP."""
    folder = tmp_path_factory.mktemp("mpp_slides")
    image = render_slide(np.random.default_rng(4), 768, SlideLook("squamous", 60.0))
    write_svs(folder / "own.svs", image, mpp=0.5)
    with tifffile.TiffWriter(folder / "no_mpp.tif") as tif:
        tif.write(image, tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None)
    return {"own": folder / "own.svs", "no_mpp": folder / "no_mpp.tif"}


def _by_slide(report: pd.DataFrame) -> pd.DataFrame:
    return report.set_index("slide")


def test_override_fills_only_missing_mpps_and_a_new_override_reextracts_those(
    slides: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _by_slide(extract_slides(slides, tmp_path, SETTINGS, mpp_override=0.25, progress=False))
    assert first["status"].tolist() == ["done", "done"]
    assert first.loc["own", "mpp"] == pytest.approx(0.5)  # the file's own; the override is not used for it
    assert first.loc["no_mpp", "mpp"] == 0.25
    assert first.loc["own", "grid_tiles"] == 36 and first.loc["no_mpp", "grid_tiles"] == 9  # 64 µm = 128 / 256 px
    assert any("not used for slide" in r.getMessage() and "own.svs" in r.getMessage() for r in caplog.records)
    folder = shard_dir(tmp_path, SETTINGS)
    assert read_index(folder, "own")["mpp_source"] == "slide"
    assert read_index(folder, "no_mpp")["mpp_source"] == "override"

    again = _by_slide(extract_slides(slides, tmp_path, SETTINGS, mpp_override=0.25, progress=False))
    assert again["status"].tolist() == ["skipped", "skipped"]

    other = _by_slide(extract_slides(slides, tmp_path, SETTINGS, mpp_override=1.0, progress=False))
    assert other.loc["own", "status"] == "skipped"  # the override never applied to it: its tiles stand
    assert other.loc["no_mpp", "status"] == "done" and other.loc["no_mpp", "mpp"] == 1.0
    assert read_index(folder, "no_mpp")["mpp"] == 1.0 and other.loc["no_mpp", "grid_tiles"] == 144  # 64 px

    gone = _by_slide(extract_slides(slides, tmp_path, SETTINGS, progress=False))  # no override: no MPP
    assert gone.loc["own", "status"] == "skipped"
    assert gone.loc["no_mpp", "status"] == "failed" and "no usable microns-per-pixel" in gone.loc["no_mpp", "error"]


def test_a_per_slide_mpp_replaces_the_files_own_and_a_changed_value_reextracts(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    one = {"own": slides["own"]}
    first = extract_slides(one, tmp_path, SETTINGS, mpp_by_slide={"own": 0.25}, progress=False)
    assert first["status"].tolist() == ["done"] and first["mpp"].tolist() == [0.25]
    assert first["grid_tiles"].tolist() == [9]
    index = read_index(shard_dir(tmp_path, SETTINGS), "own")
    assert index["mpp"] == 0.25 and index["mpp_source"] == "column"
    same = extract_slides(one, tmp_path, SETTINGS, mpp_by_slide={"own": 0.25}, progress=False)
    assert same["status"].tolist() == ["skipped"]
    changed = extract_slides(one, tmp_path, SETTINGS, mpp_by_slide={"own": 0.5}, progress=False, workers=2)
    assert changed["status"].tolist() == ["done"] and changed["mpp"].tolist() == [0.5]
    blank = extract_slides(one, tmp_path, SETTINGS, progress=False)  # no value now: the file's own (also 0.5)
    assert blank["status"].tolist() == ["done"] and blank["mpp"].tolist() == [0.5]
    assert extract_slides(one, tmp_path, SETTINGS, progress=False)["status"].tolist() == ["skipped"]


def test_a_slide_in_a_format_of_another_backend_fails_naming_file_and_backend(
    slides: dict[str, Path], tmp_path: Path
) -> None:
    slides_dir = tmp_path / "slides"
    (slides_dir / "case 7").mkdir(parents=True)
    (slides_dir / "case 7" / "a.dcm").write_bytes(b"\0" * 128 + b"DICM")  # a DICOM WSI (not a real one)
    (slides_dir / "own.svs").symlink_to(slides["own"])
    project = OmegaConf.create({"slides_dir": str(slides_dir), "annotations": None})
    chosen = select_slides(project, "all")
    assert chosen == {"case 7": slides_dir / "case 7" / "a.dcm", "own": slides_dir / "own.svs"}
    report = _by_slide(extract_slides(chosen, tmp_path / "shards", SETTINGS, progress=False))
    assert report.loc["own", "status"] == "done" and report.loc["case 7", "status"] == "failed"
    assert report.loc["case 7", "error"] == (
        f"SlideError: unsupported format for backend tiffslide: {slides_dir / 'case 7' / 'a.dcm'}; "
        "use dataset.backend=openslide"
    )
    with_openslide = extract_slides(chosen, tmp_path / "os", SETTINGS, progress=False, backend="openslide")
    assert "Cannot open slide" in _by_slide(with_openslide).loc["case 7", "error"]  # OpenSlide tried it


def test_extract_py_reads_the_mpp_column_checks_it_first_and_reextracts_changed_slides(
    slides: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    (slides_dir / "own.svs").symlink_to(slides["own"])
    (slides_dir / "no_mpp.tif").symlink_to(slides["no_mpp"])
    annotations = tmp_path / "annotations.csv"
    shards = tmp_path / "shards"

    def extract(values: list[str]) -> int:
        """What ``python extract.py ... project.mpp_column=scan_mpp`` runs, with these values in the column."""
        pd.DataFrame({"patient": ["p1", "p2"], "slide": ["own", "no_mpp"], "scan_mpp": values}).to_csv(
            annotations, index=False
        )
        overrides = [*KEY_OVERRIDES, "project.mpp_column=scan_mpp", f"project.annotations={annotations}"]
        return run(extract_config(slides_dir, shards, tmp_path, *overrides))

    with pytest.raises(AnnotationError, match=r"slide 'no_mpp' has scan_mpp='abc'.*positive numbers"):
        extract(["0.25", "abc"])
    assert not shards.exists()  # checked before any tile was extracted

    assert extract(["0.25", "0.5"]) == 0
    report = pd.read_csv(shard_dir(shards, SETTINGS) / REPORT_NAME).set_index("slide")
    assert report.loc["own", "mpp"] == 0.25 and report.loc["no_mpp", "mpp"] == 0.5
    capsys.readouterr()
    assert extract(["", "0.5"]) == 0  # blank: the file's own MPP (0.5) instead of 0.25
    changed = capsys.readouterr().out
    assert "2 slides: 1 extracted" in changed and "1 skipped (already complete" in changed
    assert read_index(shard_dir(shards, SETTINGS), "own")["mpp"] == pytest.approx(0.5)
