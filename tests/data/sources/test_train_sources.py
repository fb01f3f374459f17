"""``python train.py dataset=wsi`` and ``dataset=shards_stream`` end to end, and a kill -9 while ``dataset=wsi``
writes its location cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from src.config import REPO_ROOT
from src.extraction.locations import LOCATIONS_SUFFIX, PAUSE_ENV, read_locations
from src.infra.temp_files import PARTIAL_SUFFIX
from src.slides.tile_settings import TileSettings
from tests.conftest import tiny_overrides


def train_command(data_dir: Path, tmp_path: Path, *overrides: str, own_tiles: bool = True) -> list[str]:
    """train.py on the small demo, one fold; its tile data under ``tmp_path/project`` (``own_tiles``)."""
    project = [f"project.shards_dir={tmp_path / 'project' / 'shards'}"] if own_tiles else []
    return [
        sys.executable,
        "train.py",
        *tiny_overrides(data_dir, tmp_path / "outputs"),
        *project,
        "validation.folds=[1]",
        *overrides,
    ]


def run_train(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def validation_tiles(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    fold = run / "fold1"
    return pd.read_parquet(fold / "predictions" / "tile_val_epoch1.parquet"), pd.read_csv(fold / "slide_manifest.csv")


def location_folder(tmp_path: Path) -> Path:
    from src.config import compose

    tiles = TileSettings.from_config(compose(["tiles=demo"]).tiles)
    return tmp_path / "project" / "locations" / tiles.key


@pytest.mark.slow  # ~30 s here: a train.py process
def test_train_py_from_slides(data_dir: Path, tmp_path: Path) -> None:
    run_train(train_command(data_dir, tmp_path, "dataset=wsi", "dataloader.num_workers=2"))
    assert not (tmp_path / "project" / "shards").exists() or not list((tmp_path / "project" / "shards").rglob("*.tar"))
    table, manifest = validation_tiles(tmp_path)
    folder = location_folder(tmp_path)
    val_slides = manifest[manifest.dataset == "validation"].slide.tolist()
    expected = {(s, x, y) for s in val_slides for x, y in read_locations(folder, s)["locations"]}
    got = list(zip(table.slide, table.loc_x, table.loc_y, strict=True))
    assert len(got) == len(set(got)) and set(got) == expected  # every validation tile, once


@pytest.mark.slow  # ~30 s here: a train.py process
def test_train_py_streamed_shards(data_dir: Path, tmp_path: Path) -> None:
    # the session's shards (extracted once); the stream reads them in 2 loader processes
    run_train(train_command(data_dir, tmp_path, "dataset=shards_stream", "dataloader.num_workers=2", own_tiles=False))
    table, manifest = validation_tiles(tmp_path)
    got = list(zip(table.slide, table.loc_x, table.loc_y, strict=True))
    assert len(got) == len(set(got)) > 0
    assert set(table.slide) == set(manifest[manifest.dataset == "validation"].slide)


@pytest.mark.slow  # two train.py processes
def test_kill_during_location_cache_leaves_nothing_complete(data_dir: Path, tmp_path: Path) -> None:
    cmd = train_command(data_dir, tmp_path, "dataset=wsi")
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, PAUSE_ENV: "1"},
    )
    try:
        deadline = time.monotonic() + 300
        for line in proc.stderr:
            if line.startswith("PAUSED") or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)  # while the first slide's cache is written, before its rename
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert line.startswith("PAUSED"), line
    folder = location_folder(tmp_path)
    partial = list(folder.glob(f"*{PARTIAL_SUFFIX}"))
    assert len(partial) == 1  # the cache being written when the run was killed ...
    assert not list(folder.glob(f"*{LOCATIONS_SUFFIX}"))  # ... and nothing a later run takes as complete
    slide = partial[0].name.split(LOCATIONS_SUFFIX)[0]
    assert read_locations(folder, slide) is None
    run_train(cmd)  # a later run computes it again, and removes what the killed one left
    assert read_locations(folder, slide) is not None
    assert not list(folder.glob(f"*{PARTIAL_SUFFIX}"))
