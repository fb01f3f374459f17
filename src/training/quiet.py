"""A quiet console: the library messages that say nothing about this run are dropped.

Dropped, each for a reason that holds in this workbench:

- Lightning's "Tip" advertisements (litlogger, litmodels);
- the ``torch.utils._pytree`` ``LeafSpec`` deprecation raised from inside Lightning (not our code; fixed
  upstream);
- under DDP, "use ``sync_dist=True``" for the validation metrics and the ``all_gather`` deprecation: our
  validation metrics are computed from the outputs gathered from every rank, so they are already equal on
  all ranks (``src.training.module``);
- W&B's "anonymous setting has no effect": Lightning passes ``anonymous=None``, which
  ``src.training.loggers`` removes; the filter covers older Lightning versions.

``weights_only`` warnings are fixed where they arise (checkpoints are saved and loaded with an explicit
``weights_only``), not filtered.
"""

from __future__ import annotations

import logging
import warnings

WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"It is recommended to use `self\.log\('val/.*sync_dist=True",
    r".*torch\.distributed\.nn\.functional\.all_gather is deprecated.*",
    r".*anonymous setting has no effect.*",
    r".*Deprecated setting 'anonymous' has no effect.*",
)
LIGHTNING_LOGGERS = ("lightning_fabric.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero")


class _DropTips(logging.Filter):
    """Drops Lightning's advertising "Tip" records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.getMessage())


_TIPS = _DropTips()


def quiet_console() -> None:
    """Install the warning and logging filters (idempotent; call before a Trainer is built)."""
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _TIPS not in logger.filters:
            logger.addFilter(_TIPS)
