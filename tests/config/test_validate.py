"""validate(cfg): the cross-field rules, checked by every entry point before any tile is extracted, with a
message naming the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from src.commands import extract as extract_command
from src.config import CONFIG_DIR, compose
from src.config.validate import metric_names, validate
from src.data.dataset import Dataset
from src.errors import ConfigError
from src.pipeline import run
from src.project import dataset_from_config
from src.training.fold_trainer import build_trainer
from tests.extraction.cli_helpers import extract_config

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))

# overrides -> what the error must say
BAD_CONFIGS = {
    "optimizer_lr_text": (
        ["optimizer.lr=abc"],
        r"optimizer\.lr='abc' is rejected by torch\.optim\.Adam: expected a number like the default 0\.001",
    ),
    "optimizer_target_typo": (["optimizer._target_=torch.optim.Adamm"], r"optimizer\._target_='torch\.optim\.Adamm'"),
    "event_balance_categorical": (
        ["training_balance=event"],
        r"training_balance='event' does not fit the categorical outcome 'tumor_type'.*"
        r"\['auto', 'tile', 'slide', 'patient', 'category', 'none'\]",
    ),
    "category_balance_cox": (
        ["experiment=demo_cox", "validation_balance=category"],
        r"validation_balance='category' does not fit the cox outcome 'os_time'.*'event'",
    ),
    "metric_misspelt": (
        ["optimized_metric=val/slide_auc/tumor_type"],
        r"optimized_metric='val/slide_auc/tumor_type' is not a metric.*'val/slide_auroc/tumor_type'.*'val/loss'",
    ),
    "metric_of_another_kind": (
        ["loss=mse", "outcomes=[tumor_cellularity]"],
        r"optimized_metric='val/slide_auroc/tumor_cellularity'.*'val/slide_r2/tumor_cellularity'",
    ),
    "val_metric_without_validation": (
        ["validation=none"],
        r"optimized_metric='val/slide_auroc/tumor_type', but validation=none produces no val/ metric.*'train/loss'",
    ),
    "mil_tile_metric": (
        ["experiment=demo_mil", "optimized_metric=val/tile_auroc/tumor_type"],
        r"optimized_metric='val/tile_auroc/tumor_type' is not a metric.*'val/slide_auroc/tumor_type'",
    ),
    "mil_patient_bags_slide_metric": (
        ["experiment=demo_mil", "dataset.aggregation_level=patient"],
        r"optimized_metric='val/slide_auroc/tumor_type' is not a metric.*'val/patient_auroc/tumor_type'",
    ),
    "mil_bag_level": (["experiment=demo_mil", "dataset.aggregation_level=tile"], r"aggregation_level='tile'.*'slide'"),
    "scheduler_setting": (["scheduler=exponential", "scheduler.fn.decay=2"], r"scheduler\.fn\.decay=2 .*\(0, 1\]"),
    "scheduler_interval": (["scheduler=cosine", "scheduler.interval=batch"], r"scheduler\.interval='batch'.*'epoch'"),
    "splitter_setting": (["validation.k=1"], r"validation\.k must be an integer >= 2, got 1"),
    "torch_threads_word": (["torch_threads=many"], r"torch_threads='many' must be auto \(the job's CPUs\) or a"),
    "small_classes_word": (["validation.small_classes=drop"], r"validation\.small_classes='drop'.*\['warn', 'error'\]"),
    "no_outcome": (["outcomes=[]"], r"outcomes=.*at least one annotation column"),
    "zero_epoch": (["epochs=[0,2]"], r"epochs=\[0, 2\] must list positive epochs"),
    "zero_batch": (["batch_size=0"], r"batch_size=0 must be a positive number"),
    "cox_with_categorical": (["experiment=demo_cox", "outcomes=[os_time,tumor_type]"], r"cannot be combined"),
    "tile_setting": (["tiles.tile_px=-3"], r"tiles\.tile_px must be a positive int, got -3"),
    "mpp_override_zero": (["project.mpp_override=0"], r"project\.mpp_override=0 must be null or a positive number"),
    "mpp_override_text": (["project.mpp_override=half"], r"project\.mpp_override='half' must be null or a positive"),
    "mpp_column_number": (["project.mpp_column=5"], r"project\.mpp_column=5 must be null or the name of an annotation"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_run_rejects_before_any_tile_is_extracted(case: str, tiny_cfg, tmp_path: Path) -> None:
    overrides, message = BAD_CONFIGS[case]
    shards = tmp_path / "shards"
    cfg = tiny_cfg(f"project.shards_dir={shards}", f"run_dir={tmp_path / 'run'}", *overrides)
    with pytest.raises(ConfigError, match=message):
        run(cfg)
    assert not shards.exists(), "tiles were extracted before the bad config was caught"
    assert not (tmp_path / "run").exists(), "the run folder was written before the bad config was caught"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_shipped_experiment_is_valid(experiment: str) -> None:
    validate(compose([f"experiment={experiment}"]))


def test_the_default_config_is_valid_and_checking_it_touches_nothing(tmp_path: Path) -> None:
    cfg = compose([f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'outputs'}"])
    validate(cfg)
    validate(compose([], config_name="extract"))
    assert list(tmp_path.iterdir()) == []


def test_metric_names_follow_the_outcome_kinds() -> None:
    names = metric_names({"tumor_type": "categorical", "tumor_cellularity": "linear"})
    assert "val/patient_accuracy/tumor_type" in names and "val/tile_mae/tumor_cellularity" in names
    assert "val/slide_r2/tumor_type" not in names and names[-2:] == ["val/loss", "train/loss"]
    cox = [f"val/{level}_c_index/os_time" for level in ("tile", "slide", "patient")]
    assert metric_names({"os_time": "cox"}) == [*cox, "val/loss", "train/loss"]
    validate(compose(["validation=none", "optimized_metric=train/loss"]))


def test_the_trainer_api_validates_too(tiny_cfg, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    bad = tiny_cfg(f"project.shards_dir={shards}", "optimizer.lr=abc")
    with pytest.raises(ConfigError, match=r"optimizer\.lr='abc'"):
        dataset_from_config(bad)
    assert not shards.exists(), "tiles were extracted before the bad config was caught"
    table = pd.DataFrame({"patient": ["p1", "p2"], "slide": ["s1", "s2"], "tumor_type": ["a", "b"]})
    labels, _ = Dataset(table).labels("tumor_type")
    with pytest.raises(ConfigError, match=r"training_balance='event'"):
        build_trainer(tiny_cfg("training_balance=event"), tmp_path / "model", labels)
    # optimized_metric is what train.py returns to a sweep: the Trainer API does not use it
    linear = tiny_cfg("loss=mse", "outcomes=[tumor_cellularity]")
    validate(linear, sweep_metric=False)
    with pytest.raises(ConfigError, match="optimized_metric"):
        validate(linear)


def test_extraction_validates_before_reading_a_slide(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    cfg = extract_config(tmp_path / "slides", shards, tmp_path, "tiles.qc=bogus")
    with pytest.raises(ConfigError, match=r"tiles\.qc must be one of.*'bogus'"):
        extract_command.run(cfg)  # what extract.py runs
    assert not shards.exists()
    with pytest.raises(ConfigError, match=r"tiles\.qc must be one of.*'bogus'"):
        validate(cfg)  # and what train.py's validate says of the same settings


def test_predict_checks_its_torch_threads_too(tmp_path: Path) -> None:
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"")
    cfg = compose([f"model_path={model}", "slides=[a.svs]", "torch_threads=0"], config_name="predict")
    with pytest.raises(ConfigError, match=r"torch_threads=0 must be auto \(the job's CPUs\) or a positive number"):
        validate(cfg)
    validate(compose([f"model_path={model}", "slides=[a.svs]", "torch_threads=2"], config_name="predict"))
