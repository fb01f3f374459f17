"""Fold-level pruning: the running fold mean, the median rule on a real study, and a pruned sweep end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from src.hpsearch.pruning import FoldPruner, TrialPrunedError, fold_pruner, running_mean
from tests.hpsearch.test_sweeps import _tiny, _train

METRIC = "val/slide_auroc/tumor_type"
MEDIAN = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 0}


def _rows(values: dict[str, float]) -> list[dict]:
    rows = []
    for fold, value in values.items():
        rows.append({"fold": fold, "epoch": 1, METRIC: 0.0})  # an earlier epoch: not the fold's value
        rows.append({"fold": fold, "epoch": 3, METRIC: value})
    return rows


def test_running_mean_takes_each_folds_last_epoch() -> None:
    assert running_mean(_rows({"fold1": 0.6, "fold2": 0.8}), METRIC) == pytest.approx(np.mean([0.6, 0.8]))
    assert running_mean(_rows({"fold1": float("nan")}), METRIC) is None
    assert running_mean([{"fold": "fold1", "epoch": 1}], METRIC) is None


def _study(tmp_path: Path, earlier: list[float]) -> tuple[str, optuna.Study]:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in earlier:  # finished trials that reported their running mean after fold 1
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    return storage, study


@pytest.mark.parametrize("below", [True, False])
def test_a_trial_below_the_median_of_earlier_trials_is_pruned(tmp_path: Path, below: bool) -> None:
    earlier = [0.8, 0.7, 0.9]
    storage, study = _study(tmp_path, earlier)
    trial = study.ask()
    value = float(np.median(earlier)) + (-0.2 if below else 0.05)
    pruner = FoldPruner(storage, "s", trial.number, MEDIAN, METRIC)
    if below:
        with pytest.raises(TrialPrunedError, match=r"after 1 fold\(s\)"):
            pruner.report(_rows({"fold1": value}), 1)
    else:
        pruner.report(_rows({"fold1": value}), 1)
    reported = optuna.load_study(study_name="s", storage=storage).trials[trial.number].intermediate_values
    assert reported == {1: pytest.approx(value)}


def test_no_pruning_before_the_startup_trials(tmp_path: Path) -> None:
    storage, study = _study(tmp_path, [0.8, 0.9])  # 2 < n_startup_trials
    trial = study.ask()
    FoldPruner(storage, "s", trial.number, MEDIAN, METRIC).report(_rows({"fold1": 0.1}), 1)


@pytest.mark.slow
def test_a_pruned_study_records_pruned_trials_and_keeps_their_folds(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    tiny = [o for o in _tiny(data_dir, out) if not o.startswith("validation.")]
    _train(
        "hparams_search=shallow",
        "hparams_search.n_trials=2",
        "validation.k=2",
        "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}",  # AUROC < 2: always pruned
        *tiny,
    )
    sweep = out / "hpsearch" / "tumor_type-shallow"
    history = pd.read_csv(sweep / "history.csv")
    assert history.state.tolist() == ["pruned", "pruned"]
    assert history.reason.str.contains(r"pruned after 1 fold\(s\)").all()
    assert not (sweep / "best.yaml").exists()  # no trial completed
    states = {
        t.state
        for t in optuna.load_study(study_name="tumor_type-shallow", storage=f"sqlite:///{sweep / 'study.db'}").trials
    }
    assert states == {optuna.trial.TrialState.PRUNED}
    for folder in history.run_folder:
        assert json.loads((Path(folder) / "status.json").read_text())["status"] == "pruned"
    log = pd.read_csv(out / "results_log.csv")
    assert sorted(log.fold.unique()) == ["fold1"]  # each trial stopped after its first fold, which was kept
    assert len(log) == 2


def test_a_job_takes_its_pruner_and_study_from_its_own_config_not_from_sweep_json(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from src.config import CONFIG_DIR, register_configs

    register_configs()
    sweep = tmp_path / "sweep"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hparams_search=shallow",
                "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner}",
                f"hydra.sweep.dir={sweep}",
            ],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.job.num = 3
    sweep.mkdir()  # a sweep.json naming other code and another storage is not read
    (sweep / "sweep.json").write_text(
        json.dumps({"kind": "optuna", "storage": "sqlite:////elsewhere.db", "pruner": {"_target_": "os.system"}})
    )
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        pruner = fold_pruner(METRIC)
    finally:
        HydraConfig.instance().cfg = previous
    assert pruner.storage == f"sqlite:///{sweep / 'study.db'}" and pruner.study_name == "tumor_type-shallow"
    assert pruner.pruner["_target_"] == "optuna.pruners.MedianPruner" and pruner.trial_number == 3
