"""Every validation strategy runs end to end on the (small) demo project: train.py's path, tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from src.pipeline import run
from src.project import load_project, plan_folds

STRATEGIES = {
    "k_fold": ["validation.folds=[2]"],
    "k_fold_site": ["validation.folds=[1]"],
    "k_fold_manual": ["validation.folds=[1]"],  # one fold per site of the demo
    "bootstrap": ["validation.k=2", "validation.folds=[2]"],
    "fixed": ["validation.val_fraction=0.3"],
    "none": ["optimized_metric=train/loss"],  # no val/ metric to optimise
    "external": ["dataset.filters={dataset: [train]}"],
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_end_to_end(strategy: str, tiny_cfg, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    cfg = tiny_cfg(
        f"validation={strategy}", *STRATEGIES[strategy], f"run_dir={run_dir}", "+trainer.limit_train_batches=2"
    )
    metric = run(cfg)
    printed = capsys.readouterr().out

    splits = json.loads((run_dir / "splits.json").read_text())
    assert splits["strategy"] == strategy and splits["seed"] == cfg.seed
    trained = splits["trained"]
    assert len(trained) == 1
    annotations = pd.read_csv(cfg.project.annotations)
    for fold in splits["folds"]:
        assert not set(fold["train_patients"]) & set(fold["val_patients"])
        assert not set(fold["train_slides"]) & set(fold["val_slides"])
    fold = next(f for f in splits["folds"] if f["name"] == trained[0])
    manifest = pd.read_csv(run_dir / fold["name"] / "slide_manifest.csv")
    assert set(manifest[manifest.dataset == "training"].patient) <= set(fold["train_patients"])
    assert set(manifest[manifest.dataset == "validation"].patient) == set(fold["val_patients"])
    assert (run_dir / fold["name"] / "checkpoints" / "epoch1.ckpt").exists()  # models are saved, even for none

    summary = json.loads((run_dir / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)  # strict JSON
    assert summary["strategy"] == strategy and summary["folds"] == trained
    log = pd.read_csv(cfg.results_log)
    assert list(zip(log.run_id, log.strategy, log.fold, log.epoch)) == [(run_dir.name, strategy, trained[0], 1)]
    if strategy == "none":
        assert fold["val_patients"] == [] and sorted(fold["train_patients"]) == sorted(set(annotations.patient))
        assert not [m for m in summary["metrics"] if m.startswith("val/")]
        assert "No validation metrics at epoch 1 (validation=none)" in printed
        assert metric == pytest.approx(log["train/loss"].iloc[0])  # optimized_metric=train/loss
    else:
        auroc = summary["metrics"]["val/slide_auroc/tumor_type"]
        assert auroc["n"] == 1 and auroc["sd"] is None and auroc["mean"] == pytest.approx(metric)
        assert log["val/slide_auroc/tumor_type"].iloc[0] == pytest.approx(metric)
        assert "val/slide_auroc/tumor_type" in printed and "single fold" in printed
    if strategy == "external":
        holdout = set(annotations[annotations.dataset == "holdout"].patient)
        assert set(fold["val_patients"]) == holdout and not holdout & set(fold["train_patients"])
    if strategy == "k_fold_site":
        sites = annotations.drop_duplicates("patient").set_index("patient").site
        assert set(sites[fold["val_patients"]]) == set(fold["info"]["sites"])
        assert not set(sites[fold["train_patients"]]) & set(fold["info"]["sites"])


def test_bad_split_setting_fails_before_extraction(tiny_cfg, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    cfg = tiny_cfg("validation=k_fold_site", "validation.site_column=hospital", f"project.shards_dir={shards}")
    with pytest.raises(ValueError, match="'hospital'"):
        run(cfg)
    assert not shards.exists(), "tiles were extracted before the bad split setting was caught"


def plan_only(cfg):
    """The validation plan train.py would make for ``cfg`` (no extraction, no training)."""
    return plan_folds(cfg, *load_project(cfg))


def test_second_run_reuses_cached_splits_unless_settings_change(tiny_cfg, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    settings = ["validation=bootstrap", f"validation.cache_dir={cache}"]
    first = plan_only(tiny_cfg(*settings))
    assert first.source == "computed" and first.path.parent == cache
    again = plan_only(tiny_cfg(*settings))
    assert (again.source, again.path) == ("cache", first.path)
    assert [f.val_patients for f in again.folds] == [f.val_patients for f in first.folds]
    fraction = plan_only(tiny_cfg(*settings, "validation.val_fraction=0.4"))
    assert fraction.source == "computed" and fraction.path != first.path
    seed = plan_only(tiny_cfg(*settings, "seed=7"))
    assert seed.source == "computed" and [f.val_patients for f in seed.folds] != [f.val_patients for f in first.folds]
    assert len(list(cache.iterdir())) == 3
    # Default location: a splits/ folder next to the project annotations.
    cfg = tiny_cfg("validation=fixed")
    assert plan_only(cfg).path.parent == Path(cfg.project.annotations).parent / "splits"
    assert plan_only(tiny_cfg("validation=fixed", "validation.cache=false")).path is None
