"""Resuming a run: ``python train.py ... resume=<run folder>``, or the same command with the same ``run_dir``.

A folder that already holds a run (its ``config.yaml``) is resumed, never overwritten:

- the config composed now must equal the saved ``config.yaml`` except for :data:`RESUME_FREE_KEYS`
  (else :func:`check_resume` refuses, listing the differing keys, before anything runs);
- a run whose ``status.json`` says ``completed`` is left as it is ("nothing to do");
- a run still running on this host (its PID alive) is refused, unless that job trains other folds: jobs of one
  run, one fold each, share its folder (``src.runs.jobs``);
- folds with ``fold_status.json`` are kept (``src.runs.folds``), the interrupted fold continues from its
  ``last.ckpt`` (``src.training.resumable``), later folds are trained; the folds planned now must equal the
  saved ``splits.json`` (:func:`check_same_folds`).

``status.json`` lists when the run was resumed (``resumed``: timestamps) and the PID of the process now
running it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.runs.folds import missing_folds
from src.runs.jobs import asked_folds, busy_jobs
from src.runs.naming import CONFIG_FILE, SPLITS_FILE
from src.runs.status import read_status, write_status

log = logging.getLogger(__name__)

#: Keys that may differ between the saved config and a resume: they say where the run is, not what it does, and
#: which of its folds this job trains (jobs of one run, one fold each, share the folder: ``src.runs.jobs``); how
#: many CPU threads it uses; and how it meets a problem (a slide that cannot be tiled, a small class) — the
#: folds that result are checked against splits.json on resume. Everything else must match, paths included (they
#: name the data, the tiles and the results log).
RESUME_FREE_KEYS = (
    "resume",
    "run_dir",
    "validation.folds",
    "torch_threads",
    "on_slide_error",
    "validation.small_classes",
)
#: Fields of a previous attempt's status that no longer hold once the run runs again.
STALE_STATUS_FIELDS = ("error_type", "error", "traceback", "optimized_metric", "value")


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key → value of every leaf of a nested mapping (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], free: tuple[str, ...] = RESUME_FREE_KEYS
) -> list[str]:
    """``key: saved → current`` for each leaf that differs, except keys under ``free``."""
    old, new = flat_config(saved), flat_config(current)
    lines = []
    for key in sorted(set(old) | set(new)):
        if any(key == f or key.startswith(f + ".") for f in free):
            continue
        before, after = old.get(key, "<absent>"), new.get(key, "<absent>")
        if before != after:
            lines.append(f"{key}: {before!r} → {after!r}")
    return lines


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as ``config.yaml`` stores it (resolved, through YAML), for comparing with a saved one."""
    return _plain(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True)))


def _plain(config: Any) -> dict[str, Any]:
    return cast(dict[str, Any], OmegaConf.to_container(config, resolve=False) or {})


@dataclass
class Resume:
    """A run folder being resumed.

    Attributes:
        folder: The run folder.
        status: Its ``status.json`` record (None if it has none).
    """

    folder: Path
    status: dict[str, Any] | None
    folds: list[int] | None = None

    @property
    def complete(self) -> bool:
        """Whether the run had completed, with every fold this job asks for (then there is nothing to do)."""
        return (self.status or {}).get("status") == "completed" and not missing_folds(self.folder, self.folds)

    def joins(self, jobs: list[dict[str, Any]]) -> bool:
        """Whether ``jobs`` (this one last) hold another live job: this job joins a running run, not a dead one."""
        return len(jobs) > 1

    def report_complete(self) -> float:
        """Say that the completed run is left as it is; returns its saved metric (NaN if none)."""
        status = self.status or {}
        value = status.get("value")
        value = float("nan") if value is None else float(value)
        message = f"Run {self.folder} already completed ({status.get('updated', '?')}): nothing to do."
        log.info(message)
        print(message)
        print(f"{status.get('optimized_metric', 'metric')}: {value:.4f} (from its status.json)")
        return value

    def start(self, **fields: Any) -> None:
        """Mark the run as running again: a ``resumed`` timestamp, this process's PID, old errors dropped.

        Args:
            **fields: More status fields (the run's ``jobs``).
        """
        previous = self.status or {}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if self.joins(fields.get("jobs") or []):
            log.info("Joining run %s: its other jobs train %s", self.folder, [j["folds"] for j in fields["jobs"][:-1]])
        else:
            log.info("Resuming run %s (it was %s)", self.folder, previous.get("status", "without status"))
        write_status(
            self.folder,
            "running",
            clear=STALE_STATUS_FIELDS,
            resumed=[*previous.get("resumed", []), now],
            pid=os.getpid(),
            host=socket.gethostname(),
            **fields,
        )


def check_resume(cfg: DictConfig, folder: Path) -> Resume | None:
    """The run to resume in ``folder`` (None: a new run), after checking that it may be resumed.

    Raises:
        ConfigError: ``resume`` names a folder without a run; the config differs from the saved one (the
            differing keys are listed); a live job of the run on this host trains one of the folds asked for.
    """
    saved_config = folder / CONFIG_FILE
    if not saved_config.exists():
        if cfg.get("resume"):
            raise ConfigError(
                f"resume={cfg.resume}: no run there (no config.yaml in {folder}); "
                "give the folder of an earlier run (it holds config.yaml and status.json)"
            )
        return None
    differences = config_differences(_plain(OmegaConf.load(saved_config)), resolved(cfg))
    if differences:
        raise ConfigError(
            f"Cannot resume the run in {folder}: the config differs from its config.yaml at "
            f"{len(differences)} key(s):\n  " + "\n  ".join(differences) + f"\nOnly {', '.join(RESUME_FREE_KEYS)} "
            "may differ. Use the run's own settings to resume it, or another run_dir for a new run."
        )
    status = read_status(folder)
    folds = asked_folds(cfg)
    busy = busy_jobs(status, folds)  # our own pid is not busy: an in-process retry
    if busy:
        job = busy[0]
        trains = "every fold" if job.get("folds") is None else f"validation.folds={job['folds']}"
        raise ConfigError(
            f"Cannot resume the run in {folder}: it is still running (pid {job['pid']} on {job['host']}, "
            f"training {trains}); stop that process first, or train other folds (validation.folds)"
        )
    return Resume(folder, status, folds)


def check_same_folds(folder: Path, splits: Mapping[str, Any]) -> None:
    """Refuse to resume when the folds planned now differ from the run's ``splits.json``.

    Raises:
        ConfigError: a fold's patients or slides changed (e.g. the annotations were edited), naming the folds.
    """
    path = folder / SPLITS_FILE
    if not path.exists():
        return
    saved = {f["name"]: f for f in json.loads(path.read_text()).get("folds", [])}
    now = {f["name"]: f for f in json.loads(json.dumps(splits.get("folds", []), default=str))}
    changed = sorted(name for name in set(saved) | set(now) if saved.get(name) != now.get(name))
    if changed:
        raise ConfigError(
            f"Cannot resume the run in {folder}: the folds planned now differ from its splits.json in "
            f"{', '.join(changed)} (the annotations, slides or tiles changed); start a new run instead"
        )
