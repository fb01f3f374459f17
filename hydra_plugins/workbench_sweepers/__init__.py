"""Hydra sweeper plugins of the workbench: ``hydra/sweeper=grid`` (the default) and ``hydra/sweeper=study``.

Hydra instantiates a sweeper only from a class defined under the ``hydra_plugins`` namespace package, which
it finds on ``sys.path`` (the repository root, where ``train.py`` runs). These classes are thin shells: the
work is done in ``src/hpsearch`` (imported lazily, so extraction and other Hydra apps do not pay for Optuna).
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# Importing Optuna's storage (when Hydra builds the sampler) logs a page of alembic "setup plugin" lines.
logging.getLogger("alembic").setLevel(logging.WARNING)


class _Delegating(Sweeper):
    impl: Any

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)


class GridSweeper(_Delegating):
    """Lists and grids (``src.hpsearch.grid.GridSweeperImpl``)."""

    def __init__(self, **kwargs: Any) -> None:
        from src.hpsearch.grid import GridSweeperImpl

        self.impl = GridSweeperImpl(**kwargs)


class StudySweeper(_Delegating):
    """Optuna studies over cross-validated runs (``src.hpsearch.study.StudySweeperImpl``)."""

    def __init__(self, **kwargs: Any) -> None:
        from src.hpsearch.study import StudySweeperImpl

        self.impl = StudySweeperImpl(**kwargs)
