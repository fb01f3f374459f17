"""Fixtures for extraction tests: a small generated demo project and the shared slides."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.demo.generate import DemoProject

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> DemoProject:
    """A small demo project (8 patients, 768 px slides), generated once per session."""
    project = DemoProject(tmp_path_factory.mktemp("demo"), seed=3, n_patients=8, slide_px=768)
    project.ensure()
    return project


@pytest.fixture
def two_slides(demo_project: DemoProject) -> dict[str, Path]:
    """Two generated slides, name -> path."""
    paths = sorted(demo_project.slides_dir.glob("*.svs"))[:2]
    return {path.stem: path for path in paths}


@pytest.fixture(scope="session")
def shared_slides() -> Path:
    """Folder of the real test slides (skips when the shared data is absent)."""
    folder = SHARED_DATA / "slides"
    if not (folder / "broken.svs").is_file():
        pytest.skip(f"shared test slides not found at {folder.resolve()}")
    return folder


@pytest.fixture(scope="session")
def broken_svs(shared_slides: Path) -> Path:
    """The shared deliberately corrupt slide."""
    return shared_slides / "broken.svs"
