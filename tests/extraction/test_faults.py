"""Faults: kill -9 mid-slide, replaced slide files, bad slides through the command line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from src.demo.generate import DemoProject
from src.extraction.extract import PAUSE_ENV, extract_slides
from src.extraction.report import REPORT_NAME
from src.extraction.shards import iter_shard, read_index, shard_dir, tar_path
from src.slides.discover import find_slides
from src.slides.tile_settings import TileSettings
from tests.extraction.cli_helpers import REPO_ROOT, cli_command, run_cli

SETTINGS = TileSettings(tile_px=64, tile_um=64)
DEFAULT_KEY_OVERRIDES = ["tiles.tile_px=64", "tiles.tile_um=64"]


def _copy_slides(slides: dict[str, Path], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    for path in slides.values():
        shutil.copy2(path, folder / path.name)
    return find_slides(folder)


def test_kill_9_mid_slide_then_rerun_gives_the_uninterrupted_tiles(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slides = _copy_slides(two_slides, tmp_path / "slides")
    first, second = list(slides)
    reference = tmp_path / "reference"
    extract_slides(slides, reference, SETTINGS, progress=False)
    shards = tmp_path / "shards"
    extract_slides({second: slides[second]}, shards, SETTINGS, progress=False)  # one slide already complete
    cmd = cli_command(tmp_path / "slides", shards, tmp_path, *DEFAULT_KEY_OVERRIDES)
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, PAUSE_ENV: "5"},
    )
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        paused = ""
        for line in proc.stderr:  # the hook says when 5 tiles of the first slide are written
            if line.startswith("PAUSED"):
                paused = line
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
    assert paused.startswith(f"PAUSED {first} after 5 tiles"), paused
    assert proc.returncode == -signal.SIGKILL
    folder = shard_dir(shards, SETTINGS)
    (partial,) = folder.glob(f"{first}.tar.{proc.pid}.*.partial")  # a name only that process used
    assert partial.stat().st_size > 0  # the interrupted write is on disk...
    assert not tar_path(folder, first).exists()
    assert read_index(folder, first) is None  # ...and nobody takes it as complete
    assert (folder / f"{first}.lock").exists()  # its lock file stays, but the kernel released the lock
    rerun = run_cli(cmd)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 slides: 1 extracted (" in rerun.stdout and "1 skipped (already complete, " in rerun.stdout
    ref_folder = shard_dir(reference, SETTINGS)
    for slide in slides:
        assert tar_path(folder, slide).read_bytes() == tar_path(ref_folder, slide).read_bytes()
        assert read_index(folder, slide)["locations"] == read_index(ref_folder, slide)["locations"]
        assert len(list(iter_shard(tar_path(folder, slide)))) == read_index(folder, slide)["num_tiles"]
    assert not list(folder.rglob("*.partial")) and not list(folder.glob("*.lock"))  # the rerun cleaned up


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        found, todo = [], [pid]
        while todo:
            below = todo.pop()
            children = [child for child, parent in parents.items() if parent == below]
            found += children
            todo += children
        return found
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def _gone(pid: int) -> bool:
    """Whether a process has exited (a zombie, exited but not yet reaped, counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_kill_9_with_workers_leaves_no_worker_behind(demo_project: DemoProject, tmp_path: Path) -> None:
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    for path in sorted(demo_project.slides_dir.glob("*.svs"))[:4]:
        (slides_dir / path.name).symlink_to(path)
    slides = find_slides(slides_dir)
    reference = shard_dir(tmp_path / "reference", SETTINGS)
    extract_slides(slides, tmp_path / "reference", SETTINGS, progress=False)
    shards = tmp_path / "shards"
    cmd = cli_command(slides_dir, shards, tmp_path, *DEFAULT_KEY_OVERRIDES, "workers=2")
    env = {**os.environ, PAUSE_ENV: "5"}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        paused = []
        for line in proc.stderr:  # both workers are mid-slide, a partial tar each
            if line.startswith("PAUSED"):
                paused.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")))
                if len(paused) == 2:
                    break
        children = _descendants(proc.pid)  # the workers, the fork server, the resource tracker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
    assert len(paused) == 2 and set(paused) <= set(children)
    deadline = time.monotonic() + 30
    while not all(_gone(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [child for child in children if not _gone(child)] == []
    folder = shard_dir(shards, SETTINGS)
    assert not list(folder.rglob("*.partial"))  # the dying workers deleted their temporary tars
    assert all(read_index(folder, slide) is None for slide in slides)
    rerun = extract_slides(slides, shards, SETTINGS, progress=False)  # in-process: no second start-up
    assert rerun["status"].tolist() == ["done"] * 4
    for slide in slides:
        assert tar_path(folder, slide).read_bytes() == tar_path(reference, slide).read_bytes()
        assert read_index(folder, slide)["locations"] == read_index(reference, slide)["locations"]
    assert not list(folder.rglob("*.partial")) and not list(folder.glob("*.lock"))


def test_replaced_slide_is_extracted_again(two_slides: dict[str, Path], tmp_path: Path) -> None:
    slides = _copy_slides(two_slides, tmp_path / "slides")
    first, second = list(slides)
    extract_slides(slides, tmp_path / "shards", SETTINGS, progress=False)
    folder = shard_dir(tmp_path / "shards", SETTINGS)
    before = read_index(folder, first, slides[first])
    assert before is not None and before["slide_file"]["size"] == slides[first].stat().st_size
    os.utime(slides[first], ns=(1, 1))  # touched (or copied): same content, new mtime
    assert read_index(folder, first, slides[first]) is not None
    shutil.copy(slides[second], slides[first])  # replaced by another scan
    assert read_index(folder, first, slides[first]) is None
    assert read_index(folder, first) is not None  # without the file to compare, the shard stands
    report = extract_slides(slides, tmp_path / "shards", SETTINGS, progress=False).set_index("slide")
    assert report.loc[first, "status"] == "done" and report.loc[second, "status"] == "skipped"
    after = read_index(folder, first, slides[first])
    assert after["locations"] == read_index(folder, second)["locations"]
    assert after["locations"] != before["locations"]


def test_bad_slides_are_reported_and_the_rest_complete(
    two_slides: dict[str, Path], shared_slides: Path, tmp_path: Path
) -> None:
    slides_dir = tmp_path / "slides"
    slides = _copy_slides(two_slides, slides_dir)
    shutil.copy(shared_slides / "broken.svs", slides_dir / "broken.svs")
    shutil.copy(shared_slides / "boxes.tiff", slides_dir / "no mpp (boxes).tiff")
    annotations = tmp_path / "annotations.csv"
    names = [*slides, "broken", "no mpp (boxes)", "gone"]
    pd.DataFrame({"patient": names, "slide": names}).to_csv(annotations, index=False)
    shards = tmp_path / "shards"
    run = run_cli(
        cli_command(slides_dir, shards, tmp_path, *DEFAULT_KEY_OVERRIDES, f"project.annotations={annotations}")
    )
    assert run.returncode == 1, run.stderr
    assert "5 slides: 2 extracted (" in run.stdout and "0 skipped (already complete, 0 tiles), 3 failed" in run.stdout
    report = pd.read_csv(shard_dir(shards, SETTINGS) / REPORT_NAME, keep_default_na=False).set_index("slide")
    assert report.loc[list(slides), "status"].tolist() == ["done", "done"]
    assert (report.loc[list(slides), "kept_tiles"].astype(int) > 0).all()
    assert "not a TIFF file" in report.loc["broken", "error"] and "broken.svs" in report.loc["broken", "error"]
    assert "no usable microns-per-pixel" in report.loc["no mpp (boxes)", "error"]
    assert "mpp_override" in report.loc["no mpp (boxes)", "error"]
    assert "Slide file not found" in report.loc["gone", "error"]
    for slide in ("broken", "no mpp (boxes)", "gone"):
        assert f"FAILED {slide}: " in run.stdout
