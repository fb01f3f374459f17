"""Configs.

Composing ``conf/`` (``compose``), the typed schema (``schema``) and the cross-field rules every entry point
checks before any data is read (``validate``).
"""

from src.config.compose import (
    CONFIG_DIR,
    REPO_ROOT,
    compose,
    configure_wandb_env,
    register_configs,
    register_resolvers,
)
from src.config.validate import validate

__all__ = [
    "CONFIG_DIR",
    "REPO_ROOT",
    "compose",
    "configure_wandb_env",
    "register_configs",
    "register_resolvers",
    "validate",
]
