"""Train weakly supervised tile models: `python train.py [overrides]` (see README)."""

import hydra
from omegaconf import DictConfig

from src.config import register_configs
from src.pipeline import run

register_configs()  # resolvers and schemas, before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Compose the config and run the experiment; returns the metric that sweeps optimise."""
    return run(cfg)


if __name__ == "__main__":
    main()
