"""Loggers are plug-ins: any ``_target_`` in the ``logger`` group, with or without ``save_dir``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from src.pipeline import run
from src.training.loggers import logger_group
from tests.training.memory_logger import MemoryLogger
from tests.training.wandb_records import run_summary

MEMORY = "+logger.memory={_target_: tests.training.memory_logger.MemoryLogger, name: null, group: null}"


def test_a_logger_without_save_dir_gets_name_group_config_and_metrics(tiny_cfg, tmp_path: Path) -> None:
    MemoryLogger.made.clear()
    run(tiny_cfg("logger=none", MEMORY, "validation.folds=[1,2]", "+trainer.limit_train_batches=2"))
    (run_folder,) = (tmp_path / "outputs" / "runs").iterdir()
    assert [m.name for m in MemoryLogger.made] == ["tumor_type-fold1", "tumor_type-fold2"]
    assert {m.group for m in MemoryLogger.made} == {run_folder.name}  # the folds of one run are grouped
    for logger in MemoryLogger.made:
        assert logger.status == "success"
        assert logger.hparams["outcomes"] == ["tumor_type"] and logger.hparams["model"]["_target_"]
        logged = {key for metrics in logger.metrics for key in metrics}
        assert "val/slide_auroc/tumor_type" in logged and "train/loss_epoch" in logged
    assert not list((run_folder / "fold1").glob("logs")), "logger=none: no CSV logs"


def test_a_failing_fit_still_finalizes_its_loggers(tiny_cfg) -> None:
    MemoryLogger.made.clear()
    cfg = tiny_cfg(
        "logger=none", MEMORY, "validation.folds=[1]", "+callbacks.boom._target_=tests.training.test_loggers.Boom"
    )
    try:
        run(cfg)
    except RuntimeError as error:
        assert "boom" in str(error)
    else:
        raise AssertionError("the failing callback did not stop the fit")
    assert [m.status for m in MemoryLogger.made] == ["failed"]


class Boom:
    """A callback that fails at the first training batch."""

    def __new__(cls):  # a Lightning callback built lazily, to keep this module's imports light
        import pytorch_lightning as pl

        class _Boom(pl.Callback):
            def on_train_batch_start(self, *args, **kwargs) -> None:
                raise RuntimeError("boom")

        return _Boom()


def test_wandb_gets_the_fold_run_id_and_resumes_it(tiny_cfg, tmp_path: Path) -> None:
    from src.training.loggers import build_loggers
    from src.training.resumable import fold_logger_id

    fold = tmp_path / "fold1"
    first = fold_logger_id(fold, resume=False)
    assert fold_logger_id(fold, resume=True) == first != fold_logger_id(fold, resume=False)  # a new fit: new id
    kept = fold_logger_id(fold, resume=True)
    csv, logger = build_loggers(tiny_cfg("logger=wandb").logger, fold, name="m-fold1", group="run", run_id=kept)
    assert type(csv).__name__ == "CSVLogger"  # CSV always
    assert logger.version == kept and logger._wandb_init["resume"] == "allow"  # no W&B run is started here


@pytest.mark.slow  # a fit with CSV, TensorBoard and W&B (~25 s)
def test_offline_wandb_run_and_tensorboard_hparams_of_a_fold(tiny_cfg, tmp_path: Path) -> None:
    run(tiny_cfg("logger=all", "validation.folds=[1]"))
    (run_folder,) = (tmp_path / "outputs" / "runs").iterdir()
    (run_file,) = (run_folder / "fold1" / "wandb").glob("offline-run-*/run-*.wandb")  # one W&B run per fold
    wandb_run = run_summary(run_file)
    assert wandb_run["name"] == "tumor_type-fold1" and wandb_run["group"] == run_folder.name
    assert wandb_run["config"]["outcomes"] == ["tumor_type"]  # the resolved config
    assert wandb_run["config"]["model"]["_target_"] == "src.models.tilenet.TileNet"
    assert wandb_run["config"]["paths"]["output_dir"] == str(tmp_path / "outputs")  # resolved, not ${...}
    (row,) = pd.read_csv(tmp_path / "outputs" / "results_log.csv").to_dict("records")
    for metric in ("val/slide_auroc/tumor_type", "val/loss", "train/loss"):
        assert wandb_run["summary"][metric] == pytest.approx(row[metric], rel=1e-9), metric  # the final metrics
    assert wandb_run["summary"]["final_epoch"] == 1
    assert wandb_run["exit_code"] == 0  # finish() was called
    assert (run_folder / "fold1" / "logs" / "metrics.csv").exists()  # CSV always

    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventMultiplexer().AddRunsFromDirectory(str(run_folder / "fold1" / "tensorboard")).Reload()
    content = [c for run in events.Runs() for c in events.PluginRunToTagToContent("hparams").get(run, {}).values()]
    session = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in content]
    hparams = {
        k: v for s in session if s.HasField("session_start_info") for k, v in s.session_start_info.hparams.items()
    }
    assert hparams["seed"].number_value == 42 and hparams["model/_target_"].string_value  # the config, flattened
    scalars = {tag for tags in events.Runs().values() for tag in tags.get("scalars", [])}
    assert "val/slide_auroc/tumor_type" in scalars


def test_logger_groups_a_runs_folds_and_a_sweeps_jobs() -> None:
    assert logger_group({"run_id": "2026-01-01_run"}) == ("2026-01-01_run", None)
    sweep = {"run_id": "sweep7-3", "sweep_id": "sweep7", "sweep_job": 3}
    assert logger_group(sweep) == ("sweep7", "sweep7-3")  # grouped by sweep, each job's folds by job type
