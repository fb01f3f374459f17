"""Fixtures for slide tests: the shared real slides and tiles, and a small generated slide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from src.demo.render import SlideLook, render_slide
from src.demo.svs import write_svs
from src.slides.reader import shipped_backends

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_slides() -> Path:
    """Folder of the real test slides (skips when the shared data is absent)."""
    folder = SHARED_DATA / "slides"
    if not (folder / "cmu-1-small-region.svs").is_file():
        pytest.skip(f"shared test slides not found at {folder.resolve()}")
    return folder


@pytest.fixture(params=shipped_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """Each shipped slide backend in turn (short name): every backend must pass the real-slide tests."""
    return request.param


@pytest.fixture(scope="session")
def shared_tiles() -> Path:
    """Folder of the real test tiles (skips when the shared data is absent)."""
    folder = SHARED_DATA / "tiles"
    if not folder.is_dir() or not any(folder.glob("*.png")):
        pytest.skip(f"shared test tiles not found at {folder.resolve()}")
    return folder


@pytest.fixture(scope="session")
def demo_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 1024 px squamous slide at 0.5 mpp with levels 1, 4 and 16."""
    path = tmp_path_factory.mktemp("demo_slide") / "demo.svs"
    image = render_slide(np.random.default_rng(0), 1024, SlideLook("squamous", 60.0))
    write_svs(path, image, mpp=0.5)
    return path
