"""Loggers are plug-ins: any ``_target_`` in the ``logger`` group, with or without ``save_dir``."""

from __future__ import annotations

from pathlib import Path

from src.pipeline import run
from tests.training.memory_logger import MemoryLogger

MEMORY = "+logger.memory={_target_: tests.training.memory_logger.MemoryLogger, name: null, group: null}"


def test_a_logger_without_save_dir_gets_name_group_config_and_metrics(tiny_cfg, tmp_path: Path) -> None:
    MemoryLogger.made.clear()
    run(tiny_cfg("logger=none", MEMORY, "validation.folds=[1,2]"))
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
    from src.training.resume import fold_logger_id

    fold = tmp_path / "fold1"
    first = fold_logger_id(fold, resume=False)
    assert fold_logger_id(fold, resume=True) == first != fold_logger_id(fold, resume=False)  # a new fit: new id
    kept = fold_logger_id(fold, resume=True)
    (logger,) = build_loggers(tiny_cfg("logger=wandb").logger, fold, name="m-fold1", group="run", run_id=kept)
    assert logger.version == kept and logger._wandb_init["resume"] == "allow"  # no W&B run is started here
