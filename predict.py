"""Apply a trained model to slides: `python predict.py model_path=<run|fold|ckpt> slides=<folder>` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

from src.config import register_configs
from src.inference import run

register_configs()  # resolvers and schemas, before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Compose the config and predict; exit with status 1 when a slide failed."""
    if run(cfg):
        sys.exit(1)  # SystemExit passes through Hydra's error handling


if __name__ == "__main__":
    main()
