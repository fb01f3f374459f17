"""RunFolder's verbs on a bare folder (no training): what each writes, and what a rank > 0 leaves alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import grimp
import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from src.errors import TrialPrunedError
from src.infra import distributed
from src.runs import naming
from src.runs.folder import RunFolder
from src.runs.naming import output_folder
from src.runs.status import config_refused, read_attempt, read_status, write_status

METRIC = "val/slide_auroc/y"


def bare_cfg(tmp_path: Path, **keys: object) -> DictConfig:
    """The keys of train.yaml that a run folder reads."""
    cfg = {
        "name": "y",
        "run_dir": str(tmp_path / "run"),
        "resume": None,
        "paths": {"output_dir": str(tmp_path / "outputs")},
        "results_log": str(tmp_path / "outputs" / "results_log.csv"),
        "validation": {"folds": None},
        "epochs": [1],
    }
    return OmegaConf.create({**cfg, **keys})


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(distributed.TOKEN_VARIABLE, "attempt-1")
    return "attempt-1"


def rows(fold: str, value: float) -> list[dict]:
    return [{"run_id": "run", "fold": fold, "epoch": 1, METRIC: value}]


def test_no_module_of_the_run_package_imports_extraction() -> None:
    graph = grimp.build_graph("src")
    assert not graph.chain_exists(importer="src.runs", imported="src.extraction", as_packages=True)


def test_output_folder_is_the_chosen_one_or_a_new_unique_one(tmp_path: Path) -> None:
    assert output_folder(tmp_path / "mine", tmp_path / "runs", "y") == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()
    made = {output_folder(None, tmp_path / "runs", "y") for _ in range(5)}  # within one second
    assert len(made) == 5 and all(p.parent == tmp_path / "runs" and p.name.endswith("_y") for p in made)
    (predict,) = {output_folder("", tmp_path / "predict")}
    assert predict.is_dir() and predict.name.count("_") == 2  # <date>_<time>_<hex>, no name


def test_output_folder_under_hydra_is_the_job_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Hydra:  # HydraConfig of a job whose folder is tmp_path/job
        initialized = staticmethod(lambda: True)
        get = staticmethod(lambda: SimpleNamespace(runtime=SimpleNamespace(output_dir=str(tmp_path / "job"))))

    monkeypatch.setattr(naming, "HydraConfig", Hydra)
    assert output_folder(None, tmp_path / "predict") == tmp_path / "job" and (tmp_path / "job").is_dir()
    assert output_folder(tmp_path / "mine", tmp_path / "predict") == tmp_path / "mine"  # outdir= first
    assert not (tmp_path / "predict").exists()


def test_open_picks_resume_over_run_dir_and_names_a_sweep_job(tmp_path: Path, token: str, caplog) -> None:
    folder = RunFolder.open(bare_cfg(tmp_path, resume=str(tmp_path / "old")))
    assert folder.path == tmp_path / "old" and folder.token == token and folder.run_id == "old"
    assert "run_dir=" in caplog.text and "is ignored" in caplog.text
    sweep = {"sweep_id": "s1", "sweep_job": 3}
    assert RunFolder.open(bare_cfg(tmp_path, run_dir=None), sweep).run_id == "s1-3"  # a new folder per job
    assert RunFolder.open(bare_cfg(tmp_path), sweep).run_id == "run"  # jobs of one run share its name


def test_join_a_new_run_writes_config_status_and_attempt(tmp_path: Path, token: str) -> None:
    cfg = bare_cfg(tmp_path, validation={"folds": [2]})
    folder = RunFolder.open(cfg, {"sweep_id": "s1", "sweep_job": 0})
    assert folder.join(cfg) and folder.resumed is None
    status = read_status(folder.path)
    assert status["status"] == "running" and status["sweep"]["sweep_id"] == "s1"
    assert [(j["pid"], j["folds"]) for j in status["jobs"]] == [(os.getpid(), [2])]
    assert OmegaConf.load(folder.path / "config.yaml") == cfg
    assert read_attempt(folder.path, token) == {"state": "running"}
    again = RunFolder.open(cfg)
    assert again.join(cfg) and again.resumed is not None  # the same folder again: a resume


def test_kept_and_done_folds_reach_the_log_the_marker_and_the_pruner(tmp_path: Path, token: str) -> None:
    class Recorder:
        reports: ClassVar[list[tuple[int, list[str]]]] = []

        def report(self, rows: list[dict], folds_done: int) -> None:
            self.reports.append((folds_done, [r["fold"] for r in rows]))
            if folds_done == 3:
                raise TrialPrunedError("pruned after 3 fold(s)")

    RunFolder.open(bare_cfg(tmp_path)).fold_done("fold1", rows("fold1", 0.6), last=True)  # before a resume
    folder = RunFolder.open(bare_cfg(tmp_path), pruner=Recorder())  # the resumed run, a trial of a study
    assert folder.kept("fold1") and not folder.kept("fold2")  # fold 1 completed before: kept
    folder.fold_done("fold2", rows("fold2", 0.8), last=False)
    assert not folder.kept("fold3")
    with pytest.raises(TrialPrunedError, match="after 3 fold"):
        folder.fold_done("fold3", rows("fold3", 0.7), last=False)
    folder.fold_done("fold4", rows("fold4", 0.9), last=True)  # the last fold: nothing to report
    assert Recorder.reports == [(2, ["fold1", "fold2"]), (3, ["fold1", "fold2", "fold3"])]
    log = pd.read_csv(tmp_path / "outputs" / "results_log.csv")
    assert list(log.fold) == ["fold1", "fold2", "fold3", "fold4"] and set(log.run_id) == {"run"}
    for fold in ("fold1", "fold2", "fold3", "fold4"):
        assert json.loads((folder.path / fold / "fold_status.json").read_text())["status"] == "completed"


def test_a_fold_done_again_replaces_its_rows_in_the_log(tmp_path: Path, token: str) -> None:
    folder = RunFolder.open(bare_cfg(tmp_path))
    folder.fold_done("fold1", rows("fold1", 0.6), last=True)
    folder.fold_done("fold1", rows("fold1", 0.7), last=True)  # re-done after a kill
    log = pd.read_csv(tmp_path / "outputs" / "results_log.csv")
    assert list(log[METRIC]) == [0.7]


def test_finish_completes_the_last_job_and_waits_for_others(tmp_path: Path, token: str) -> None:
    folder = RunFolder.open(bare_cfg(tmp_path))
    fold1 = {"name": "fold1", "train_patients": ["a"], "val_patients": ["b"]}
    (folder.path / "splits.json").write_text(json.dumps({"strategy": "k_fold", "folds": [fold1]}))
    folder.fold_done("fold1", rows("fold1", 0.75), last=True)
    other = {"pid": os.getppid(), "host": os.uname().nodename, "folds": [2]}  # a live job for fold 2
    write_status(folder.path, "running", jobs=[other])
    _, record, metric = folder.finish(1, {METRIC: (0.0, 1.0)}, METRIC)
    assert metric == pytest.approx(0.75) and record["folds"] == ["fold1"]
    assert read_status(folder.path)["status"] == "running" and read_status(folder.path)["jobs"] == [other]
    write_status(folder.path, "running", jobs=[])
    (folder.path / "fold2").mkdir()  # a fold another job started and never finished
    folder.finish(1, {METRIC: (0.0, 1.0)}, METRIC)
    status = read_status(folder.path)
    assert status["status"] == "failed" and status["incomplete_folds"] == ["fold2"]
    (folder.path / "fold2").rmdir()
    folder.finish(1, {METRIC: (0.0, 1.0)}, METRIC)
    status = read_status(folder.path)
    assert status["status"] == "completed" and status["value"] == pytest.approx(0.75)
    assert "incomplete_folds" not in status and "error" not in status
    assert json.loads((folder.path / "summary.json").read_text())["metrics"][METRIC]["mean"] == pytest.approx(0.75)


def test_fail_and_pruned_say_why_and_a_rank_above_0_writes_nothing(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = RunFolder.open(bare_cfg(tmp_path))
    folder.fail(ValueError("bad tile"))
    status = read_status(folder.path)
    assert status["status"] == "failed" and status["error_type"] == "ValueError" and status["error"] == "bad tile"
    assert read_attempt(folder.path, token)["state"] == "failed"  # the waiting ranks stop too
    folder.pruned(TrialPrunedError("pruned after 1 fold(s)"))
    assert read_status(folder.path)["status"] == "pruned" and read_status(folder.path)["reason"].startswith("pruned")
    other = RunFolder.open(bare_cfg(tmp_path, run_dir=str(tmp_path / "rank1")))
    monkeypatch.setenv("RANK", "1")
    other.fail(ValueError("bad tile"))
    other.fold_done("fold1", rows("fold1", 0.5), last=True)
    assert sorted(p.name for p in other.path.iterdir()) == []  # only rank 0 writes
    assert not (tmp_path / "outputs" / "results_log.csv").exists()


def test_a_refused_config_writes_only_into_hydras_new_job_folder(tmp_path: Path, token: str) -> None:
    config_refused(bare_cfg(tmp_path), ValueError("epochs"))  # run_dir: a folder that may hold a run
    config_refused(bare_cfg(tmp_path, run_dir=None), ValueError("epochs"))  # no Hydra: no folder was made
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()
