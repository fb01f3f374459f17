"""Jobs of one run: several processes training the folds of one run folder, e.g. one fold per SLURM job.

``python train.py -m hydra/launcher=slurm_gpu validation.folds=[1],[2],[3] run_dir=outputs/runs/cv3`` starts
three jobs that share ``outputs/runs/cv3``: each trains its fold into ``fold<k>/``, and the folder ends up as a
3-fold run's. What keeps them apart:

- the folder's ``.run.lock`` (:func:`run_lock`, a `src.infra.locks.FileLock`) is held while a job checks
  and joins the run (``config.yaml``, ``status.json``) and while it writes the merged ``summary.json`` and the
  status when it ends, so two jobs never write those files at once;
- ``status.json`` lists the live jobs (``jobs``: pid, host and ``validation.folds`` of each); a job asking for
  a fold that a live job on this host trains is refused (:func:`busy_jobs`), others join;
- ``validation.folds`` may differ between the jobs and the saved ``config.yaml`` (``src.runs.resume``).

The job that ends last (no other live job left) writes ``completed``, or ``failed`` when a fold folder was
left without ``fold_status.json`` (``src.runs.folds.incomplete_folds``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.infra.locks import FileLock
from src.infra.processes import pid_alive
from src.runs.folds import folds_completed
from src.runs.naming import RUN_LOCK


def run_lock(folder: str | Path) -> FileLock:
    """The lock that jobs of the run in ``folder`` take to join it or to write its summary and status."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / RUN_LOCK)


def asked_folds(cfg: DictConfig) -> list[int] | None:
    """The fold numbers this job trains (``validation.folds``); None: every fold."""
    folds = cfg.get("validation", {}).get("folds")
    return sorted(int(f) for f in folds) if folds else None


def this_job(folds: Sequence[int] | None) -> dict[str, Any]:
    """This process as an entry of ``status.json``'s ``jobs``."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "folds": list(folds) if folds is not None else None,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _same(job: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    return job.get("pid") == other.get("pid") and job.get("host") == other.get("host")


def live_jobs(status: Mapping[str, Any] | None, folder: str | Path | None = None) -> list[dict[str, Any]]:
    """The jobs of a ``status.json`` record that may still run.

    A job on this host counts while its PID is alive. One on another host cannot be checked: it counts until it
    leaves, or until every fold it asked for has completed in ``folder`` (a job killed on another node, whose
    fold was then trained again, no longer holds the run up). A record without ``jobs`` (a run written before
    jobs were listed) that says ``running`` counts as one job training every fold.
    """
    if not status:
        return []
    jobs = status.get("jobs")
    if jobs is None:
        jobs = [{"pid": status.get("pid"), "host": status.get("host"), "folds": None}]
        if status.get("status") != "running":
            return []
    here = socket.gethostname()
    live = []
    for job in jobs:
        if job.get("host") == here:
            alive = pid_alive(int(job.get("pid") or 0))
        else:
            alive = folder is None or not folds_completed(folder, job.get("folds"))
        if alive:
            live.append(dict(job))
    return live


def overlap(a: Sequence[int] | None, b: Sequence[int] | None) -> bool:
    """Whether two jobs' ``validation.folds`` share a fold (None: every fold)."""
    return a is None or b is None or bool(set(a) & set(b))


def busy_jobs(status: Mapping[str, Any] | None, folds: Sequence[int] | None) -> list[dict[str, Any]]:
    """Live jobs on this host, other than this process, that train one of ``folds``."""
    me, here = this_job(folds), socket.gethostname()
    return [
        j for j in live_jobs(status) if j.get("host") == here and not _same(j, me) and overlap(j.get("folds"), folds)
    ]


def joined(
    status: Mapping[str, Any] | None, folds: Sequence[int] | None, folder: str | Path | None = None
) -> list[dict[str, Any]]:
    """``jobs`` once this process joined the run in ``folder``: the live ones and this one."""
    me = this_job(folds)
    return [*(j for j in live_jobs(status, folder) if not _same(j, me)), me]


def left(status: Mapping[str, Any] | None, folder: str | Path | None = None) -> list[dict[str, Any]]:
    """``jobs`` once this process left the run in ``folder``: the other live ones."""
    me = this_job(None)
    return [j for j in live_jobs(status, folder) if not _same(j, me)]
