"""``status.json`` in every run folder: ``running`` while it runs, then ``completed``, ``failed`` or ``pruned``.

A failed run records the error's type, message and the end of its traceback, so a folder of a run that
crashed can never be mistaken for a good one. A run killed with SIGKILL (or by a lost node) cannot write
anything: its status stays ``running``, with the PID and host that a reader can check.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.infra.distributed import is_main
from src.infra.files import write_json_atomic
from src.runs.naming import ATTEMPTS_DIR, STATUS_FILE

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_status(run_folder: Path, status: str, clear: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """Write ``status.json`` atomically (a reader never sees half a file); keeps the fields written before.

    Args:
        run_folder: The run folder.
        status: ``running``, ``completed``, ``failed`` or ``pruned`` (a study trial its pruner stopped).
        clear: Fields written before to drop (e.g. a resumed run's old error).
        **fields: Extra JSON-ready fields (e.g. the metric, the error).

    Returns:
        The status written.
    """
    path = Path(run_folder) / STATUS_FILE
    record = read_status(run_folder) or {"started": _now(), "pid": os.getpid(), "host": socket.gethostname()}
    for key in clear:
        record.pop(key, None)
    record.update({"status": status, "updated": _now(), **fields})
    write_json_atomic(path, record)  # a reader never sees half a file; no temporary file is left
    return record


def write_attempt(run_folder: str | Path, token: str, state: str, **fields: Any) -> Path:
    """Rank 0: record this attempt's ``state`` (``running``, ``prepared``, ``failed``, ``completed``) for its ranks.

    One file per attempt (``.attempts/<token>.json``), so jobs of one run that share a run folder (one fold
    each, several ranks each) never read each other's state.
    """
    folder = Path(run_folder) / ATTEMPTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{token}.json"
    write_json_atomic(path, {"state": state, **fields})
    return path


def read_attempt(run_folder: str | Path, token: str) -> dict | None:
    """The state rank 0 recorded for attempt ``token`` (None: nothing yet)."""
    try:
        return json.loads((Path(run_folder) / ATTEMPTS_DIR / f"{token}.json").read_text())
    except (OSError, ValueError):
        return None


def read_status(run_folder: Path) -> dict[str, Any] | None:
    """The run's status record, or None when it has none."""
    path = Path(run_folder) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def failure_fields(error: BaseException) -> dict[str, Any]:
    """What a failed status records about ``error``: type, message and the last lines of the traceback."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return {
        "error_type": type(error).__name__,
        "error": str(error),
        "traceback": "".join(lines)[-4000:],
    }


def config_refused(cfg: DictConfig, error: BaseException) -> None:
    """A config refused by ``validate``: Hydra's new job folder (the run folder) gets ``status.json`` ``failed``.

    With ``run_dir`` or ``resume`` the run folder is that one, which a refused config must not touch (it may
    hold a completed run), and without Hydra no folder was made: nothing is written then.
    """
    if cfg.get("run_dir") or cfg.get("resume") or not HydraConfig.initialized() or not is_main():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    try:
        write_status(folder, "failed", **failure_fields(error))
    except Exception as unwritten:
        log.error("%s could not be written (%s); the config error: %s", folder / STATUS_FILE, unwritten, error)
