"""Command line: ``python -m src.extraction [project=...] [tiles=...] [workers=N]``.

Builds the demo project when the project config has a ``demo`` generator, extracts every
slide of ``project.slides_dir`` into ``project.shards_dir``, prints a summary and exits 1
when any slide failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.extraction.extract import extract_slides, summarize
from src.extraction.settings import TileSettings
from src.slides.discover import find_slides

REPO_ROOT = Path(__file__).resolve().parents[2]

if not OmegaConf.has_resolver("repo_root"):
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))


@hydra.main(version_base="1.3", config_path="../../conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    """Run extraction for the composed config; exit with status 1 when a slide failed."""
    settings = TileSettings.from_config(cfg.tiles)  # fail on bad settings before any I/O
    project = cfg.project
    if project.get("demo") is not None:
        instantiate(project.demo).ensure()
    slides = find_slides(project.slides_dir)
    report = extract_slides(
        slides,
        Path(project.shards_dir),
        settings,
        workers=int(cfg.workers),
        mpp_override=project.get("mpp_override"),
        progress=bool(cfg.progress),
    )
    print(f"Shards: {Path(project.shards_dir) / settings.key}")
    print(summarize(report))
    if (report["status"] == "failed").any():
        sys.exit(1)  # SystemExit passes through Hydra's error handling


if __name__ == "__main__":
    main()
