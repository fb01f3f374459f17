"""A logger that keeps everything in memory and takes no ``save_dir`` (a plug-in written by a user)."""

from __future__ import annotations

from typing import Any, ClassVar

from pytorch_lightning.loggers import Logger


class MemoryLogger(Logger):
    """Records hyper-parameters, metrics and the final status; instances are listed in ``MemoryLogger.made``."""

    made: ClassVar[list[MemoryLogger]] = []

    def __init__(self, name: str | None = "memory", group: str | None = None, id: str | None = None) -> None:
        super().__init__()
        self._name = name
        self.group = group
        self.run_id = id  # the logger run id (``id: null`` in the YAML: the fold's, kept for a resume)
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, float]] = []
        self.status: str | None = None
        MemoryLogger.made.append(self)

    @property
    def name(self) -> str | None:
        """The run name given by the workbench."""
        return self._name

    @property
    def version(self) -> int:
        """A constant version."""
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Keep the hyper-parameters."""
        self.hparams.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Keep each logged metrics dict."""
        self.metrics.append(dict(metrics))

    def finalize(self, status: str) -> None:
        """Remember how the fit ended."""
        self.status = status
