"""Runs sharing a shard folder: per-slide locks, the report updated under a lock, stale locks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from src.demo.generate import DemoProject
from src.extraction.extract import PAUSE_ENV, PAUSE_UNTIL_ENV, extract_slides
from src.extraction.report import REPORT_NAME, report_frame, update_report
from src.extraction.shards import index_path, lock_path, read_index, shard_dir, tar_path
from src.infra import locks
from src.infra.locks import FileLock
from src.slides.tile_settings import TileSettings
from tests.extraction.cli_helpers import REPO_ROOT, cli_command

SETTINGS = TileSettings(tile_px=64, tile_um=64)
KEY_OVERRIDES = ["tiles.tile_px=64", "tiles.tile_um=64"]


def _slides_folder(demo_project: DemoProject, folder: Path, count: int) -> dict[str, Path]:
    folder.mkdir(parents=True)
    slides = {}
    for path in sorted(demo_project.slides_dir.glob("*.svs"))[:count]:
        (folder / path.name).symlink_to(path)
        slides[path.stem] = folder / path.name
    return slides


def test_two_runs_on_one_folder_share_the_work(demo_project: DemoProject, tmp_path: Path) -> None:
    slides = _slides_folder(demo_project, tmp_path / "slides", 4)
    reference = shard_dir(tmp_path / "reference", SETTINGS)
    extract_slides(slides, tmp_path / "reference", SETTINGS, progress=False)
    shards = tmp_path / "shards"
    # each run stops on its first slide after 3 tiles (holding its lock) until both have: so the two overlap by
    # construction, whatever the machine's load and their start-up times
    release = tmp_path / "release"
    env = {**os.environ, PAUSE_ENV: "3", PAUSE_UNTIL_ENV: str(release)}
    runs = []
    for i in range(2):
        cmd = cli_command(tmp_path / "slides", shards, tmp_path / f"run{i}", *KEY_OVERRIDES)
        runs.append(
            subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        )
        seen = []
        for line in runs[-1].stderr:  # to its first pause (EOF: it ended without one)
            seen.append(line)
            if line.startswith("PAUSED"):
                break
        assert seen and seen[-1].startswith("PAUSED"), "".join(seen)[-2000:]
    release.touch()
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
        assert "4 slides: " in stdout and ", 0 failed" in stdout, stdout
    extracted = [int(stdout.split("4 slides: ")[1].split(" extracted")[0]) for stdout, _ in outputs]
    assert sum(extracted) == 4  # each slide extracted once, by one of the runs...
    assert min(extracted) >= 1  # ...and the runs did overlap: each took some (the other skipped them)
    folder = shard_dir(shards, SETTINGS)
    for slide in slides:
        assert tar_path(folder, slide).read_bytes() == tar_path(reference, slide).read_bytes()
        assert read_index(folder, slide, slides[slide])["locations"] == read_index(reference, slide)["locations"]
    assert not list(folder.rglob("*.partial")) and not list(folder.rglob("*.lock"))
    report = pd.read_csv(folder / REPORT_NAME, keep_default_na=False)
    assert sorted(report["slide"]) == sorted(slides)  # one row per slide
    assert set(report["status"]) <= {"done", "skipped"} and (report["error"] == "").all()
    for row in report.itertuples():  # and it agrees with the disk
        assert read_index(folder, row.slide)["num_tiles"] == row.kept_tiles


def test_a_slide_locked_by_another_run_is_left_for_last_then_waited_for(
    two_slides: dict[str, Path], tmp_path: Path
) -> None:
    first, second = list(two_slides)
    reference = shard_dir(tmp_path / "reference", SETTINGS)
    extract_slides({first: two_slides[first]}, tmp_path / "reference", SETTINGS, progress=False)
    folder = shard_dir(tmp_path / "shards", SETTINGS)
    folder.mkdir(parents=True)
    other_run = FileLock(lock_path(folder, first))
    assert other_run.acquire(blocking=False)
    result = {}
    run = threading.Thread(
        target=lambda: result.update(report=extract_slides(two_slides, folder.parent, SETTINGS, progress=False))
    )
    run.start()
    deadline = time.monotonic() + 60
    while read_index(folder, second) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_index(folder, second) is not None and run.is_alive()  # did the free slide, waits for ours
    for name in (tar_path(reference, first), index_path(reference, first)):  # "the other run" completes it
        shutil.copy2(name, folder / name.name)
    other_run.release()
    run.join(timeout=60)
    report = result["report"].set_index("slide")
    assert report.loc[first, "status"] == "skipped" and report.loc[second, "status"] == "done"
    assert report.loc[first, "kept_tiles"] == read_index(reference, first)["num_tiles"]


def test_a_held_lock_is_busy_until_released(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "a.lock"), FileLock(tmp_path / "a.lock")
    assert first.acquire(blocking=False)
    info = json.loads((tmp_path / "a.lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert not second.acquire(blocking=False)
    assert f"pid {os.getpid()} on host " in second.holder()
    assert not second.acquire(timeout=0.3)
    threading.Timer(0.3, first.release).start()
    assert second.acquire(timeout=30)  # waits, then gets it
    second.release()
    assert not (tmp_path / "a.lock").exists()  # nothing left behind


def test_a_lock_file_left_by_a_killed_process_is_free(tmp_path: Path) -> None:
    path = tmp_path / "a.lock"
    path.write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "since": 0}))
    with FileLock(path) as lock:  # flock: the kernel released it when its holder died
        assert lock.held
    assert not path.exists()


@pytest.mark.parametrize(
    ("host", "age_s", "stale"),
    [("this", 0, "dead pid"), ("other", 10 * 3600, True), ("other", 60, False), ("this", 0, False)],
)
def test_without_flock_stale_locks_are_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, age_s: float, stale: bool | str
) -> None:
    def no_flock(fd: int, operation: int) -> None:
        raise OSError(locks.errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_flock)
    path = tmp_path / "a.lock"
    if stale == "dead pid":
        dead = subprocess.Popen(["true"])
        dead.wait()
        pid = dead.pid
    else:
        pid = os.getpid() if host == "this" else 1
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname() if host == "this" else "elsewhere"}))
    os.utime(path, (time.time() - age_s,) * 2)
    lock = FileLock(path)
    assert lock.acquire(blocking=False) == bool(stale)
    if stale:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        lock.release()
        assert not path.exists()
    else:
        assert path.exists() and not lock.held


def test_concurrent_report_updates_keep_every_row(tmp_path: Path) -> None:
    def update(worker: int) -> None:
        for i in range(8):
            update_report(tmp_path, report_frame([{"slide": f"w{worker}-{i}", "status": "done", "kept_tiles": i}]))

    threads = [threading.Thread(target=update, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    report = pd.read_csv(tmp_path / REPORT_NAME)
    assert sorted(report["slide"]) == sorted(f"w{w}-{i}" for w in range(4) for i in range(8))
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.lock"))
