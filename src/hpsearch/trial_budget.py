"""``n_trials`` across every command that runs one study: trials are reserved under a lock, never overshot.

Several commands may run one study at once (two ``train.py hparams_search=...`` on one sweep folder, or on
one storage). Each takes its next trial with :func:`reserve_trial`, which, under a lock shared by every
process using the study (:func:`study_lock_path`), counts the trials that already hold a place:

- finished ones (complete, pruned or failed), except those ``interrupted`` (their process ended: their
  parameters are queued again);
- running ones whose process is alive: on this host its PID runs; on another host its heartbeat
  (:class:`Heartbeat`, every :data:`HEARTBEAT_SECONDS` while the trial runs) is recent (:data:`STALE_SECONDS`).

Only while that count is below ``n_trials`` does it ask Optuna for a trial (a queued one first), and marks it
with its PID, host and heartbeat before the lock is released. So the commands together end with exactly
``n_trials`` finished trials, unless a trial is interrupted after the others stopped (run the same command
again). A running trial whose process is gone is marked failed + ``interrupted`` and its parameters are queued
again (by whichever command reserves next), so after ``kill -9`` the same command still ends with exactly
``n_trials`` finished trials and tries the interrupted parameters again.

The lock is a file (:class:`~src.infra.locks.FileLock`: ``flock``, released by the kernel when its
holder dies, and deleted on release): beside the SQLite file, or in the sweep folder for other storages.
Commands on other hosts share it where their filesystem supports ``flock`` (else a lock file), as extraction.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from src.hpsearch.study_data import ATTR, TrialAttrs, check_trial, read_trials
from src.infra.locks import FileLock
from src.infra.processes import pid_alive

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
HEARTBEAT_SECONDS = 60.0  # a running trial's sweeper writes workbench:heartbeat this often
STALE_SECONDS = 600.0  # a running trial of another host without a heartbeat this long is taken as dead
SQLITE = "sqlite:///"


def study_lock_path(storage: str, sweep_dir: Path) -> Path:
    """The lock file shared by every command on the study: ``<sqlite file>.lock``, else in the sweep folder."""
    if storage.startswith(SQLITE) and storage[len(SQLITE) :] not in ("", ":memory:"):
        database = Path(storage[len(SQLITE) :])
        return database.with_name(database.name + ".lock")
    return sweep_dir / ".study.lock"


def counts(trial: FrozenTrial, attrs: TrialAttrs) -> bool:
    """Whether a finished trial counts towards ``n_trials`` (an ``interrupted`` one does not)."""
    return trial.state in FINISHED and not attrs.interrupted


def alive(trial: FrozenTrial, attrs: TrialAttrs, now: float | None = None) -> bool:
    """Whether a running trial's process still runs: its PID on this host, else a recent heartbeat."""
    if attrs.host == socket.gethostname() and attrs.pid is not None:
        return pid_alive(attrs.pid)
    last = attrs.heartbeat
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    return last is None or (now or time.time()) - last < STALE_SECONDS


def reserve_trial(
    study: optuna.Study,
    label: str,
    n_trials: int,
    lock_path: Path,
    searched: Mapping[str, BaseDistribution],
) -> Trial | None:
    """The next trial of this command, or None when ``n_trials`` trials are finished or running elsewhere.

    Under the study's lock: check every trial's values (:func:`~src.hpsearch.study_data.check_trial`), mark
    running trials whose process is gone as interrupted (their parameters queued again), count the trials that
    hold a place (see the module docstring) and, when fewer than ``n_trials``, ask for a trial and mark it ours.

    Args:
        study: The study.
        label: How messages name it (:func:`~src.hpsearch.study_data.study_label`).
        n_trials: The total of finished trials the study is to reach.
        lock_path: The lock shared by every command on the study (:func:`study_lock_path`).
        searched: The distributions this sweep searches (queued parameters must fall inside them).

    Raises:
        StudyDataError: a value of the study does not fit its schema (before any trial is asked).
    """
    with FileLock(lock_path):
        trials, attrs = _checked(study, label, searched)
        if _recover(study, trials, attrs):
            trials, attrs = _checked(study, label, searched)
        done = [t for t in trials if counts(t, attrs[t.number])]
        now = time.time()
        running = [t for t in trials if t.state == TrialState.RUNNING and alive(t, attrs[t.number], now)]
        if len(done) + len(running) >= n_trials:
            if running:
                log.info(
                    "n_trials=%d: %d trial(s) finished and %d running in other commands (%s): this one stops",
                    n_trials,
                    len(done),
                    len(running),
                    ", ".join(_where(t, attrs[t.number]) for t in running),
                )
            return None
        trial = study.ask()
        trial.set_user_attr(ATTR + "pid", os.getpid())
        trial.set_user_attr(ATTR + "host", socket.gethostname())
        trial.set_user_attr(ATTR + "heartbeat", time.time())
        return trial


class Heartbeat:
    """While in its ``with`` block, writes ``workbench:heartbeat`` (the time) into the trial every ``every`` s.

    It tells commands on other hosts that the trial's process is alive; a failed write is logged once and
    ends the thread (the trial goes on).
    """

    def __init__(self, study: optuna.Study, trial: Trial, every: float = HEARTBEAT_SECONDS) -> None:
        self.storage, self.trial_id, self.every = study._storage, trial._trial_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.storage.set_trial_user_attr(self.trial_id, ATTR + "heartbeat", time.time())
            except Exception as error:  # e.g. the study's file is briefly locked, or the trial already told
                log.debug("heartbeat of trial %d not written: %s", self.trial_id, error)
                return


def _checked(
    study: optuna.Study, label: str, searched: Mapping[str, BaseDistribution]
) -> tuple[list[FrozenTrial], dict[int, TrialAttrs]]:
    trials = read_trials(study, label)
    return trials, {t.number: check_trial(label, t, searched) for t in trials}


def _recover(study: optuna.Study, trials: list[FrozenTrial], attrs: dict[int, TrialAttrs]) -> bool:
    """Running trials whose process is gone: failed + ``interrupted``, their parameters queued again."""
    now, recovered = time.time(), False
    for trial in trials:
        if trial.state != TrialState.RUNNING or alive(trial, attrs[trial.number], now):
            continue
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, ATTR + "interrupted", True)
        storage.set_trial_user_attr(trial._trial_id, ATTR + "reason", "interrupted: its process ended")
        storage.set_trial_state(trial._trial_id, TrialState.FAIL)
        with warnings.catch_warnings():  # optuna 2.10 calls enqueue_trial's helpers experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.enqueue_trial(dict(trial.params))
        log.info("trial %d interrupted earlier: marked failed, its parameters are tried again", trial.number)
        recovered = True
    return recovered


def _where(trial: FrozenTrial, attrs: TrialAttrs) -> str:
    return f"trial {trial.number}: pid {attrs.pid} on {attrs.host}"
