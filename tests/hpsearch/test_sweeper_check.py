"""Hydra's optimising sweeper plugins are refused before their sweeper is built; ours pass."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from omegaconf import DictConfig

from src.config import CONFIG_DIR, register_configs
from src.errors import ConfigError
from src.hpsearch.sweeper_check import check_sweeper

PLUGIN = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def _with_hydra(*overrides: str) -> DictConfig:
    """The config as Hydra hands it to its callbacks (with the ``hydra`` node)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _multirun_start(cfg: DictConfig) -> None:
    """What ``hydra.main`` does with ``-m`` before it builds the sweeper: the configured callbacks' hook."""
    Callbacks(cfg).on_multirun_start(config=cfg, config_name="train")


def test_the_optuna_plugins_sweeper_is_refused_before_it_is_built() -> None:
    cfg = _with_hydra("hydra/sweeper=optuna")
    assert cfg.hydra.sweeper._target_ == PLUGIN
    with pytest.raises(SystemExit, match=r"hydra/sweeper=study") as stop:
        _multirun_start(cfg)
    assert "would minimize val/slide_auroc/tumor_type" in str(stop.value)
    with pytest.raises(ConfigError, match=r"hparams_search=shallow\|broad\|cox"):
        check_sweeper(cfg)


def test_the_plugin_named_by_its_class_is_refused_too() -> None:
    cfg = _with_hydra(f"hydra.sweeper._target_={PLUGIN}", "optimized_metric=val/loss")
    with pytest.raises(ConfigError, match=r"hydra/sweeper=optuna .* is refused"):
        check_sweeper(cfg)  # the grid config has no direction key: the message does not guess one


@pytest.mark.parametrize("overrides", [[], ["hparams_search=shallow"], ["hydra/sweeper=study"]])
def test_our_sweepers_pass(overrides: list[str]) -> None:
    _multirun_start(_with_hydra(*overrides))
