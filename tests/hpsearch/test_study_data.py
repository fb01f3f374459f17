"""Values read back from a study, a sweep.json or a grid file are plain data checked against a schema."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from cmaes import CMA
from optuna.distributions import LogUniformDistribution

from src.hpsearch.grid import read_grid_file
from src.hpsearch.study_data import ATTR, StudyDataError, check_trial, job_folder
from src.hpsearch.sweep_info import read_sweep_file
from src.hpsearch.trial_budget import reserve_trial, study_lock_path

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
LR = {"lr": LogUniformDistribution(1e-5, 1e-2)}


def _study(tmp_path: Path) -> tuple[str, optuna.Study]:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    return storage, optuna.create_study(study_name="s", storage=storage, direction="maximize")


def _reserve(storage: str, tmp_path: Path):
    study = optuna.load_study(study_name="s", storage=storage)
    return reserve_trial(study, f"study 's' ({storage})", 5, study_lock_path(storage, tmp_path), LR)


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [
        ("pid", "abc", "a process id"),
        ("interrupted", "yes", "true or false"),
        ("folds", [0.5], "a mapping of fold name"),
        ("mean", "0.7", "a finite number"),
    ],
)
def test_a_malformed_attribute_stops_before_any_trial_naming_study_trial_and_attribute(
    tmp_path: Path, attribute: str, value: object, expected: str
) -> None:
    storage, study = _study(tmp_path)
    study.enqueue_trial({"lr": 1e-3})  # a queued trial: a reservation would run it
    trial = study.ask()
    trial.set_user_attr(ATTR + attribute, value)
    study.tell(trial, 0.5)
    with pytest.raises(StudyDataError) as error:
        _reserve(storage, tmp_path)
    message = str(error.value)
    assert f"study 's' ({storage}): trial 0 has user attribute '{ATTR}{attribute}' = {value!r}" in message
    assert expected in message and "hparams_search.study_name" in message
    assert [t.state.name for t in optuna.load_study(study_name="s", storage=storage).trials] == ["COMPLETE"]


def test_an_attribute_that_is_not_json_is_named_by_trial_and_key(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    for value in (0.1, 0.2):
        trial = study.ask()
        trial.set_user_attr(ATTR + "reason", "fine")
        study.tell(trial, value)
    with sqlite3.connect(tmp_path / "study.db") as database:  # what a damaged or hand-edited file holds
        database.execute(
            "UPDATE trial_user_attributes SET value_json = 'not json' WHERE trial_id = "
            "(SELECT trial_id FROM trials WHERE number = 1)"
        )
    with pytest.raises(StudyDataError, match=r"trial 1 has user attribute 'workbench:reason' = 'not json'"):
        _reserve(storage, tmp_path)


def test_queued_parameters_outside_the_searched_distribution_are_refused(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    study.enqueue_trial({"lr": "0.5; rm -rf"})
    with pytest.raises(StudyDataError, match=r"trial 0 has system attribute 'fixed_params\.lr' = '0\.5; rm -rf'"):
        _reserve(storage, tmp_path)


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (self.path,))

    def __init__(self, path: str) -> None:
        self.path = path


def _with_cma_state(study: optuna.Study, state: bytes) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, "cma:optimizer:0", state.hex())
    study.tell(trial, 0.5)
    return study.trials[-1]


def test_a_cma_state_that_names_other_code_is_refused_before_optuna_unpickles_it(tmp_path: Path) -> None:
    _, study = _study(tmp_path)
    made = tmp_path / "made-by-the-study"
    bad = _with_cma_state(study, pickle.dumps(_Payload(str(made))))
    with pytest.raises(StudyDataError, match=r"trial 0 has system attribute 'cma:optimizer'.*names posix\.mkdir"):
        check_trial("study 's'", bad, LR)
    assert not made.exists()
    good = CMA(mean=np.zeros(2), sigma=1.0, bounds=np.array([[0.0, 1.0]] * 2), seed=1)
    check_trial("study 's'", _with_cma_state(study, pickle.dumps(good)), LR)  # the sampler's own state passes


def test_a_job_folder_is_read_back_only_inside_the_sweep_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "3").mkdir(parents=True)
    (sweep / "out").symlink_to(tmp_path)
    assert job_folder(sweep, "3") == sweep / "3"
    assert job_folder(sweep, str(sweep / "3")) == sweep / "3"
    assert job_folder(sweep, "/elsewhere/copy/3") == sweep / "3"  # a copied sweep folder: its own trial 3
    assert job_folder(sweep, "../secrets") is None
    assert job_folder(sweep, "out") is None  # a link out of the sweep folder
    assert job_folder(sweep, None) is None


def test_sweep_json_and_grid_files_hold_plain_data_only(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"kind": "optuna", "common_overrides": "batch_size=8"}))
    with pytest.raises(ValueError, match=r"sweep\.json: common_overrides='batch_size=8', expected a list"):
        read_sweep_file(tmp_path)
    grid = tmp_path / "grid.csv"
    for column, value in [
        ("model.backbone._target_", "os.system"),  # only the targets conf/ names
        ("model._args_", "[1]"),
        ("hydra.run.dir", "/x"),
        ("l1", "${oc.env:X}"),
    ]:
        grid.write_text(f"job,{column},overrides\n0,{value},x\n")
        with pytest.raises(ValueError, match=r"(?s)grid\.csv was not run: .*plain values only.*job 0: "):
            read_grid_file(grid)
    grid.write_text("job,optimizer.lr,model.backbone._target_,overrides\n0,1e-3,src.models.examples.small_cnn,x\n")
    assert read_grid_file(grid) == [(0, ["optimizer.lr=1e-3", "model.backbone._target_=src.models.examples.small_cnn"])]
