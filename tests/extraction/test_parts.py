"""Extraction across nodes: ``part=i/n`` jobs split the slides, write the shards of one full run, merge the report."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from src.demo.generate import DemoProject
from src.errors import ConfigError
from src.extraction.extract import extract_slides
from src.extraction.parts import parse_part, slide_part
from src.extraction.report import REPORT_NAME
from src.extraction.shards import shard_dir, tar_path
from src.slides.tile_settings import TileSettings
from tests.extraction.cli_helpers import cli_command, run_cli

SETTINGS = TileSettings(tile_px=64, tile_um=64)
KEY_OVERRIDES = ["tiles.tile_px=64", "tiles.tile_um=64"]


@pytest.mark.parametrize("n_slides", [0, 1, 7, 20])
@pytest.mark.parametrize("n_parts", [1, 2, 3, 8])
def test_parts_cover_every_slide_exactly_once_in_balanced_deterministic_parts(n_slides: int, n_parts: int) -> None:
    names = [f"slide_{i:03d}" for i in range(n_slides)]
    shuffled = random.Random(n_slides * 10 + n_parts).sample(names, len(names))
    slides = {name: Path(f"/slides/{name}.svs") for name in shuffled}
    parts = [slide_part(slides, f"{i}/{n_parts}") for i in range(1, n_parts + 1)]
    taken = [name for part in parts for name in part]
    assert sorted(taken) == names  # every slide exactly once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    again = dict(sorted(slides.items()))  # the order the slides were listed in does not matter
    assert [slide_part(again, f"{i}/{n_parts}") for i in range(1, n_parts + 1)] == parts
    assert all(part[name] == slides[name] for part in parts for name in part)
    assert slide_part(slides, None) == slides


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1", "a/b", "1/0", "-1/2"])
def test_a_bad_part_names_the_key_and_the_form(bad: str) -> None:
    with pytest.raises(ConfigError, match=rf"part='{bad}': use i/n with 1 <= i <= n"):
        parse_part(bad)
    assert parse_part(" 2 / 8 ") == (2, 8) and parse_part(None) is None


def test_two_part_jobs_give_the_shards_of_one_extraction_and_one_report(
    demo_project: DemoProject, tmp_path: Path
) -> None:
    """``python extract.py -m part=1/2,2/2`` (Hydra's launcher: the same jobs as on SLURM, one process)."""
    slides_dir, shards = demo_project.slides_dir, tmp_path / "shards"
    command = cli_command(slides_dir, shards, tmp_path, *KEY_OVERRIDES, "part=1/2,2/2")
    command.insert(2, "-m")  # python extract.py -m ...
    run = run_cli(command)
    assert run.returncode == 0, run.stderr[-3000:]
    slides = {p.stem: p for p in sorted(slides_dir.glob("*.svs"))}
    halves = [set(slide_part(slides, part)) for part in ("1/2", "2/2")]
    assert f"Part 1/2: {len(halves[0])} of {len(slides)} slides" in run.stdout
    assert f"Part 2/2: {len(halves[1])} of {len(slides)} slides" in run.stdout
    whole = extract_slides(slides, tmp_path / "whole", SETTINGS, progress=False)
    parts, one = shard_dir(shards, SETTINGS), shard_dir(tmp_path / "whole", SETTINGS)
    for slide in slides:
        assert tar_path(parts, slide).read_bytes() == tar_path(one, slide).read_bytes(), slide
    report = pd.read_csv(parts / REPORT_NAME, keep_default_na=False)
    assert sorted(report.slide) == sorted(slides) and set(report.status) == {"done"}  # every slide, once
    expected = whole.set_index("slide").kept_tiles.to_dict()
    assert report.set_index("slide").kept_tiles.to_dict() == expected
    assert "The report lists" in run.stdout
