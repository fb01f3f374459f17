"""Config composition helpers shared by train.py, the CLI entry points, notebooks and tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from src.trust import CONFIG_DIR  # conf/: one definition, in the bottom layer that reads it as text

REPO_ROOT = CONFIG_DIR.parent


def register_resolvers() -> None:
    """Register the OmegaConf resolvers our configs use (idempotent)."""
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("join"):
        OmegaConf.register_new_resolver("join", lambda items, sep="-": sep.join(str(i) for i in items))


def register_configs() -> None:
    """Register everything composing needs: the resolvers and the schemas in Hydra's ConfigStore (idempotent).

    Call it before ``@hydra.main`` composes (train.py, predict.py and extract.py do, at import).
    """
    from src.config.schema import store_schemas

    register_resolvers()
    store_schemas()


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose a config from `conf/` exactly as `python train.py <overrides>` would.

    Args:
        overrides: Hydra override strings, e.g. ``["model=resnet18", "epochs=[1,3]"]``.
        config_name: Primary config file in ``conf/`` (without ``.yaml``).

    Returns:
        The composed config (struct mode: unknown keys are rejected; plain keys are typed by
        ``src.config.schema``). Cross-field rules are checked by ``src.config.validate``, which every
        entry point calls.

    Raises:
        hydra.errors.ConfigCompositionException: an unknown key or option, or a value of the wrong type
            (the message names the key, e.g. ``full_key: batch_size``).
        ValueError: an unknown augmentation letter (listing the valid ones), or ``n`` without a normalizer.
    """
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
        except ConfigCompositionException as error:
            cause = error.__cause__  # e.g. "Value 'abc' ... could not be converted to Integer  full_key: batch_size"
            if cause is None or str(cause) in str(error):
                raise
            raise ConfigCompositionException(f"{error}: {cause}") from cause
    if "augment" in cfg:  # letter codes are a free string: Hydra cannot check them, so we do it here
        from src.data.augment import check_augment_config

        check_augment_config(cfg.augment, cfg.get("normalizer"))
    return cfg


def configure_wandb_env() -> None:
    """Run W&B offline unless the user has configured a key, so nothing blocks without network."""
    if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")


def validate(cfg: DictConfig) -> None:
    """Check the config before any data is read (placeholder until the typed schema lands)."""
    from hydra.utils import instantiate

    from src.data.augment import check_augment_config

    for key in ("training_balance", "validation_balance"):
        if cfg[key] not in ("auto", "tile", "slide", "patient", "category", "event", "none"):
            raise ValueError(f"{key}={cfg[key]!r}")
    check_augment_config(cfg.get("augment"), cfg.get("normalizer"))
    source = (cfg.get("normalizer") or {}).get("source", "dataset")
    if source != "dataset" and not Path(source).is_file():
        raise FileNotFoundError(f"normalizer.source={source!r} is neither 'dataset' nor an existing image file")
    if not cfg.outcomes:
        raise ValueError("outcomes is empty: name at least one annotation column, e.g. outcomes=[tumor_type]")
    if not cfg.epochs or min(cfg.epochs) < 1:
        raise ValueError(f"epochs must list positive epochs, got {list(cfg.epochs or [])}")
    instantiate(cfg.validation.splitter)
