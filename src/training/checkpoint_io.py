"""Checkpoint files complete under their final name or absent, whatever kills the save.

Lightning's own ``TorchCheckpointIO`` writes through fsspec, which writes a local file to ``$TMPDIR`` and then
``shutil.move``s it: when ``$TMPDIR`` and the run folder are on different file systems (the usual cluster
set-up) that move is a copy, which a full disk or a ``kill -9`` leaves truncated under the final name
(``epoch3.ckpt``, ``last.ckpt``). :class:`AtomicCheckpointIO` writes every checkpoint the Trainer saves
(our ``epoch{N}.ckpt`` and ``last.ckpt``, and any a ``ModelCheckpoint`` of ``callbacks=`` saves) to a
temporary file beside the destination, fsyncs it and renames it into place (``src.infra.files``); on any
failure the temporary file is deleted and the error re-raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

from src.infra.files import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` (same format, same loading) with atomic, local saves.

    Given to the Trainer as a plugin (``src.training.fold_trainer``): under DDP the strategy calls it on
    rank 0 only. Remote paths (``s3://…``) are left to Lightning's fsspec writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path``: the whole file under that name, or (on any failure) no new file.

        Raises:
            OSError: the file could not be written (``ENOSPC``: a full disk), with the errno of the failed write
                and ``path``; the temporary file is deleted and an earlier file at ``path`` is left as it was.
        """
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        try:
            with atomic_file(path, "wb") as handle:
                torch.save(checkpoint, handle)
        except RuntimeError as error:  # torch's zip writer hides a failed write behind its own error
            cause = _os_error(error)
            if cause is None:
                raise
            raise OSError(cause.errno, f"{cause.strerror}: the checkpoint was not saved", str(path)) from error


def _os_error(error: BaseException | None) -> OSError | None:
    """The ``OSError`` (e.g. ENOSPC) that caused ``error``, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
