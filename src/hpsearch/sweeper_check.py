"""Refuse Hydra's optimising sweeper plugins before their first trial: our ``hydra/sweeper=study`` replaces them.

``hydra/sweeper=optuna`` (hydra-optuna-sweeper's own sweeper; nevergrad's and Ax's likewise) optimises the value
``train.py`` returns in the direction of its own ``hydra.sweeper.direction`` (``minimize`` unless set), knowing
nothing of ``optimized_metric``: it minimised AUROC. It also restarts trial folders at 0 on a resume and stops
at the first failed trial (the reasons :mod:`src.hpsearch.study` exists). :class:`SweeperCheck` is a Hydra
callback (``conf/hydra/default.yaml``): Hydra calls ``on_multirun_start`` after composing and before it builds
the sweeper, so such a sweep stops there, naming our sweeper, before any trial starts. The check looks at the
sweeper's ``_target_``, so every way of choosing such a plugin (its config name or its class) is refused.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError

# Sweeper plugins that optimise the returned value without knowing its direction, by module prefix
REPLACED = {
    "hydra_plugins.hydra_optuna_sweeper": "optuna",
    "hydra_plugins.hydra_nevergrad_sweeper": "nevergrad",
    "hydra_plugins.hydra_ax_sweeper": "ax",
}
OURS = "hydra/sweeper=study"


def check_sweeper(config: DictConfig) -> None:
    """Refuse a sweep whose sweeper is one of Hydra's optimising plugins (:data:`REPLACED`).

    Args:
        config: The composed config with its ``hydra`` node (what Hydra passes to its callbacks).

    Raises:
        ConfigError: the sweeper is a replaced plugin; the message names ``hydra/sweeper=study`` and the presets.
    """
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    name = next((plugin for prefix, plugin in REPLACED.items() if target.startswith(prefix + ".")), None)
    if name is None:
        return
    metric = OmegaConf.select(config, "optimized_metric", default=None, throw_on_resolution_failure=False)
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default=None, throw_on_resolution_failure=False)
    direction = getattr(direction, "name", direction)  # the Optuna plugin's Direction enum
    what = f"would {direction} {metric} (hydra.sweeper.direction={direction})" if direction and metric else "is refused"
    raise ConfigError(
        f"hydra/sweeper={name} ({target}) {what}: Hydra's optimising sweeper plugins do not know which way "
        "optimized_metric is better, and their loop restarts trial folders at 0 on a resume and stops at the first "
        f"failed trial. Use our Optuna sweeper, {OURS} (the same sampler, n_trials, storage, study_name and params "
        "keys; the direction follows optimized_metric: AUROC, accuracy, R², c-index maximised, losses and errors "
        "minimised), or a preset: hparams_search=shallow|broad|cox."
    )


class SweeperCheck(Callback):
    """Hydra callback running :func:`check_sweeper` before the sweeper is built (``conf/hydra/default.yaml``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse a replaced sweeper plugin (see the module docstring) before any trial starts.

        Raises:
            SystemExit: with the :func:`check_sweeper` message. Hydra turns an ``Exception`` raised by a callback
                into a warning and goes on; ``SystemExit`` is not an ``Exception``, so the command stops here.
        """
        try:
            check_sweeper(config)
        except ConfigError as error:
            raise SystemExit(f"Error: {error}") from error
