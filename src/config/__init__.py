"""Configs.

Composing ``conf/`` (``compose``), the typed schema (``schema``) and the cross-field rules every entry point
checks before any data is read (``src.config.validate.validate``; import it from there: it loads torch, and
this package does not, so that ``extract.py`` starts without it; extraction's own rules are
``src.config.extraction_rules``).
"""

from src.config.compose import (
    CONFIG_DIR,
    REPO_ROOT,
    compose,
    configure_wandb_env,
    register_configs,
    register_resolvers,
)

__all__ = [
    "CONFIG_DIR",
    "REPO_ROOT",
    "compose",
    "configure_wandb_env",
    "register_configs",
    "register_resolvers",
]
