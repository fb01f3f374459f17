"""A slide file cut short is a clear error naming it (every backend); tifffile's lines stay out of the log."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest

from src.extraction.extract import extract_slides
from src.slides.reader import SlideError, open_slide
from src.slides.tiff_check import file_damage, quiet_tifffile
from src.slides.tile_settings import TileSettings


def _cut(source: Path, folder: Path, keep: float) -> Path:
    """A copy of ``source`` holding only its first ``keep`` of the bytes (an interrupted copy)."""
    data = source.read_bytes()
    path = folder / f"cut {keep}.svs"
    path.write_bytes(data[: max(8, int(len(data) * keep))])
    return path


@pytest.mark.parametrize("keep", [0.999, 0.9, 0.5, 0.01])
def test_a_truncated_svs_is_a_clear_error_naming_it(
    demo_svs: Path, tmp_path: Path, backend: str, keep: float, caplog: pytest.LogCaptureFixture
) -> None:
    path = _cut(demo_svs, tmp_path, keep)
    with caplog.at_level(logging.DEBUG), pytest.raises(SlideError) as error:
        open_slide(path, backend=backend)
    message = str(error.value)
    assert message.startswith(f"Slide file {path} is truncated or corrupt: it has {path.stat().st_size:,} bytes")
    assert "copy it again" in message and "out of range" not in message
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]  # no stray tifffile line


def test_a_whole_slide_opens_as_before(demo_svs: Path, backend: str) -> None:
    assert file_damage(demo_svs) is None
    with open_slide(demo_svs, backend=backend) as reader:
        assert reader.level_count == 3


def test_the_real_slide_truncated_fails_at_open_not_midway(shared_slides: Path, tmp_path: Path) -> None:
    path = _cut(shared_slides / "cmu-1-small-region.svs", tmp_path, 0.5)  # was: "index 0 out of range(0)"
    with pytest.raises(SlideError, match=rf"Slide file {path} is truncated or corrupt: .* page starts at byte"):
        open_slide(path)


def test_extraction_reports_a_truncated_slide_by_name(demo_svs: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.svs"
    shutil.copy(demo_svs, whole)
    cut = _cut(demo_svs, tmp_path, 0.9)  # tiffslide opened it with one level and extracted it
    report = extract_slides(
        {"whole": whole, "cut": cut}, tmp_path / "shards", TileSettings(tile_px=64, tile_um=64), progress=False
    ).set_index("slide")
    assert report.loc["whole", "status"] == "done" and report.loc["cut", "status"] == "failed"
    assert f"Slide file {cut} is truncated or corrupt" in report.loc["cut", "error"]


def test_quiet_tifffile_keeps_only_this_threads_lines(caplog: pytest.LogCaptureFixture) -> None:
    tifffile_log = logging.getLogger("tifffile")
    with caplog.at_level(logging.WARNING, logger="tifffile"), quiet_tifffile() as messages:
        tifffile_log.error("mine")
        other = threading.Thread(target=tifffile_log.error, args=("another thread's",))
        other.start()
        other.join()
    tifffile_log.error("after")
    assert messages == ["mine"]
    assert [r.getMessage() for r in caplog.records if r.name == "tifffile"] == ["another thread's", "after"]
