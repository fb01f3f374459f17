"""n_trials across commands on one study: reservations under the study's lock, recovery of dead trials."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import LogUniformDistribution
from optuna.trial import TrialState

from src.config import REPO_ROOT
from src.hpsearch.study_data import ATTR
from src.hpsearch.trial_budget import STALE_SECONDS, reserve_trial, study_lock_path
from tests.hpsearch.test_sweeps import ENV, _tiny

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
LR = {"lr": LogUniformDistribution(1e-5, 1e-2)}


def _command(storage: str) -> optuna.Study:
    """The study as one command opens it (its own Study object and storage connection)."""
    return optuna.create_study(study_name="s", storage=storage, direction="maximize", load_if_exists=True)


def _reserve(study: optuna.Study, n_trials: int, tmp_path: Path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    return reserve_trial(study, "study 's'", n_trials, study_lock_path(storage, tmp_path), LR)


def _finished(storage: str) -> list[optuna.trial.FrozenTrial]:
    return _command(storage).get_trials(states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))


def test_two_commands_interleaved_end_with_exactly_n_trials(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first, second = _command(storage), _command(storage)
    a = _reserve(first, 2, tmp_path)
    b = _reserve(second, 2, tmp_path)
    assert (a.number, b.number) == (0, 1)
    first.tell(a, 0.5)
    assert _reserve(first, 2, tmp_path) is None  # 1 finished + 1 running in the other command: no third
    second.tell(b, 0.6)
    assert _reserve(second, 2, tmp_path) is None
    assert len(_finished(storage)) == 2
    assert not (tmp_path / "study.db.lock").exists()  # the lock file is removed on release


def test_commands_in_threads_never_overshoot(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _command(storage)  # created once, before the commands race to load it

    def command() -> None:
        study = _command(storage)
        while (trial := _reserve(study, 4, tmp_path)) is not None:
            trial.suggest_float("lr", 1e-5, 1e-2, log=True)
            time.sleep(0.01)
            study.tell(trial, 1.0)

    threads = [threading.Thread(target=command) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)  # generous: three commands on one study take seconds, longer on a loaded machine
        assert not thread.is_alive(), "a command is still reserving trials"
    trials = _command(storage).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)  # none beyond the budget


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_trial_of_a_dead_process_is_interrupted_and_its_parameters_reserved_again(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = _command(storage)
    old = study.ask()
    lr = old.suggest_float("lr", 1e-5, 1e-2, log=True)
    old.set_user_attr(ATTR + "pid", _dead_pid())
    old.set_user_attr(ATTR + "host", socket.gethostname())
    again = _command(storage)
    trial = _reserve(again, 1, tmp_path)  # the interrupted trial does not count: one place is free
    assert trial is not None and trial.suggest_float("lr", 1e-5, 1e-2, log=True) == lr
    before = again.trials[0]
    assert before.state == TrialState.FAIL and before.user_attrs[ATTR + "interrupted"] is True
    again.tell(trial, 1.0)
    assert _reserve(again, 1, tmp_path) is None


@pytest.mark.parametrize("silent_for", [10.0, STALE_SECONDS + 60])
def test_a_trial_of_another_host_counts_while_its_heartbeat_is_recent(tmp_path: Path, silent_for: float) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = _command(storage)
    other = study.ask()
    other.suggest_float("lr", 1e-5, 1e-2, log=True)
    other.set_user_attr(ATTR + "pid", 1)
    other.set_user_attr(ATTR + "host", "another-host")
    other.set_user_attr(ATTR + "heartbeat", time.time() - silent_for)
    trial = _reserve(study, 1, tmp_path)
    if silent_for < STALE_SECONDS:
        assert trial is None  # its place is held
        assert study.trials[0].state == TrialState.RUNNING
    else:
        assert trial is not None  # taken as dead: interrupted, its parameters reserved again
        assert study.trials[0].user_attrs[ATTR + "interrupted"] is True


@pytest.mark.slow
def test_two_commands_on_one_study_finish_exactly_n_trials(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    command = [sys.executable, "train.py", "hparams_search=shallow", "hparams_search.n_trials=2", *_tiny(data_dir, out)]
    # started together: one creates the study, both reserve trials from it
    processes = [subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    for process in processes:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-4000:]
    sweep = out / "hpsearch" / "tumor_type-shallow"
    history = pd.read_csv(sweep / "history.csv")
    assert sorted(history.trial) == [0, 1] and set(history.state) <= {"complete", "failed"}
    assert sorted(int(p.name) for p in sweep.iterdir() if p.is_dir()) == [0, 1]
    study = optuna.load_study(study_name="tumor_type-shallow", storage=f"sqlite:///{sweep / 'study.db'}")
    assert len(study.trials) == 2
    assert os.listdir(sweep).count("study.db.lock") == 0
