"""Cut tissue tiles from a project's slides into shards: `python extract.py [overrides]` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

from src.commands.extract import run
from src.config import register_configs

register_configs()  # resolvers and schemas, before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    """Compose the config and extract; exit with status 1 when a slide failed."""
    if run(cfg):
        sys.exit(1)  # SystemExit passes through Hydra's error handling


if __name__ == "__main__":
    main()
