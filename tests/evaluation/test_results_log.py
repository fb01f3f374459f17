"""Fold summary: mean, sd and 95% intervals over folds (Student-t; within the bounds of bounded metrics);
single-fold and metric-free runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from src.evaluation.results_log import (
    append_results,
    bounded_interval,
    epoch_summary,
    format_summary,
    json_safe,
    summarize,
)
from src.outcomes import available_kinds, metric_bounds, outcome_kind
from src.outcomes.categorical import CategoricalOutcome
from tests.full_disk import small_disk


def fold_rows(values: list[float], epoch: int = 1) -> list[dict]:
    return [
        {
            "run_id": "r",
            "strategy": "k_fold",
            "fold": f"fold{i}",
            "epoch": epoch,
            "val/slide_auroc/y": v,
            "train/loss": 1.0,
        }
        for i, v in enumerate(values, start=1)
    ]


def test_interval_is_students_t() -> None:
    values = [0.71, 0.83, 0.64, 0.9]
    summary = summarize(fold_rows(values))
    row = summary[summary.metric == "val/slide_auroc/y"].iloc[0]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert row["mean"] == np.mean(values) and row.sd == np.std(values, ddof=1) and row.n == 4
    np.testing.assert_allclose([row.ci95_low, row.ci95_high], [low, high])


def test_single_fold_has_no_spread_and_strict_json() -> None:
    summary = summarize(fold_rows([0.8]))
    metrics = epoch_summary(summary, 1)
    assert metrics["val/slide_auroc/y"] == {"mean": 0.8, "sd": None, "n": 1, "ci95": [None, None]}
    json.loads(json.dumps(json_safe(summary.to_dict("records"))), parse_constant=lambda c: 1 / 0)  # no NaN
    assert "single fold" in format_summary(summary, 1, "fixed")


def test_runs_without_validation_metrics() -> None:
    rows = [{"run_id": "r", "strategy": "none", "fold": "fold1", "epoch": 1, "train/loss": 0.5}]
    summary = summarize(rows)
    assert list(summary.metric) == ["train/loss"]
    assert format_summary(summary, 1, "none") == "No validation metrics at epoch 1 (validation=none)"
    assert epoch_summary(summarize([]), 1) == {}
    assert format_summary(summarize([]), 1).startswith("No validation metrics")


def test_results_log_gains_one_row_per_fold_and_epoch(tmp_path) -> None:
    path = tmp_path / "results_log.csv"
    append_results(path, fold_rows([0.7, 0.8], epoch=1) + fold_rows([0.75, 0.85], epoch=2))
    append_results(path, [{"run_id": "s", "strategy": "none", "fold": "fold1", "epoch": 1, "train/loss": 0.4}])
    log = pd.read_csv(path)
    assert list(zip(log.run_id, log.fold, log.epoch)) == [
        ("r", "fold1", 1),
        ("r", "fold2", 1),
        ("r", "fold1", 2),
        ("r", "fold2", 2),
        ("s", "fold1", 1),
    ]
    assert list(log.strategy) == ["k_fold"] * 4 + ["none"] and np.isnan(log["val/slide_auroc/y"].iloc[-1])


AUROC_BOUNDS = {"val/slide_auroc/y": (0.0, 1.0)}


def test_bounded_interval_stays_in_bounds_and_is_the_logit_t_interval() -> None:
    values = [1.0, 0.9961, 0.9931]  # Student-t on these goes above 1 (the 0.9897 – 1.0038)
    plain = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert plain[1] > 1
    row = summarize(fold_rows(values), bounds=AUROC_BOUNDS).iloc[0]
    assert 0 <= row.ci95_low <= row["mean"] <= row.ci95_high <= 1
    # brute-force reference: move the bound 1e-3 inside, t interval of the logits, back through expit
    logits = special.logit(np.clip(values, 1e-3, 1 - 1e-3))
    expected = special.expit(stats.t.interval(0.95, 2, loc=logits.mean(), scale=stats.sem(logits)))
    np.testing.assert_allclose([row.ci95_low, row.ci95_high], expected)


def test_bounded_interval_in_the_middle_is_close_to_students_t() -> None:
    values = [0.48, 0.52, 0.50, 0.55, 0.45]
    row = summarize(fold_rows(values), bounds=AUROC_BOUNDS).iloc[0]
    plain = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    np.testing.assert_allclose([row.ci95_low, row.ci95_high], plain, atol=0.003)


def test_one_sided_bounds_and_equal_values() -> None:
    r2 = [0.999, 1.0, 0.97]
    plain = stats.t.interval(0.95, 2, loc=np.mean(r2), scale=stats.sem(r2))
    np.testing.assert_allclose(bounded_interval(np.array(r2), -np.inf, 1.0), (plain[0], 1.0))  # cut at the bound
    mae = [0.01, 0.02, 0.0]
    plain = stats.t.interval(0.95, 2, loc=np.mean(mae), scale=stats.sem(mae))
    np.testing.assert_allclose(bounded_interval(np.array(mae), 0.0, np.inf), (0.0, plain[1]))
    assert bounded_interval(np.array([1.0, 1.0, 1.0]), 0.0, 1.0) == (1.0, 1.0)
    assert all(np.isnan(bounded_interval(np.array([0.7]), 0.0, 1.0)))


def test_every_kind_declares_bounds_for_its_metrics() -> None:
    for kind in available_kinds():
        cls = outcome_kind(kind)
        assert set(cls.metric_bounds) == set(cls.metric_names), kind
    bounds = metric_bounds([CategoricalOutcome("y", classes=["a", "b"])])
    assert bounds["val/patient_auroc/y"] == (0.0, 1.0) and bounds["train/accuracy/y"] == (0.0, 1.0)
    assert len(bounds) == 8  # auroc and accuracy at 3 levels, and both as training metric


def test_the_training_accuracy_interval_stays_in_0_1_as_a_logit_t_interval() -> None:
    """Issue 20 item 15: the interval of ``train/accuracy`` (upper 1.488) was Student-t on the raw values."""
    values = [0.99, 1.0, 0.6]
    rows = [
        {"fold": f"fold{i}", "epoch": 3, "train/accuracy/y": v, "val/slide_auroc/y": 0.7 + i / 100}
        for i, v in enumerate(values, start=1)
    ]
    summary = summarize(rows, bounds=metric_bounds([CategoricalOutcome("y", classes=["a", "b"])]))
    row = summary[summary.metric == "train/accuracy/y"].iloc[0]
    assert stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))[1] > 1  # what it printed
    assert 0 <= row.ci95_low <= row["mean"] <= row.ci95_high <= 1
    # reference: the 1.0 moved 1e-3 inside, scipy's t interval of the logits, mapped back through expit
    logits = special.logit(np.clip(values, 1e-3, 1 - 1e-3))
    expected = special.expit(stats.t.interval(0.95, 2, loc=logits.mean(), scale=stats.sem(logits)))
    np.testing.assert_allclose([row.ci95_low, row.ci95_high], expected)


def test_rows_written_again_replace_their_earlier_copies(tmp_path) -> None:
    path = tmp_path / "results_log.csv"
    append_results(path, [{"run_id": "a", "fold": "fold1", "epoch": 1, "val/loss": 0.5}])
    append_results(path, [{"run_id": "b", "fold": "fold1", "epoch": 1, "val/loss": 0.7}])
    rows = [{"run_id": "a", "fold": "fold1", "epoch": e, "val/loss": 0.1 * e} for e in (1, 2)]
    append_results(path, rows, replace={"run_id": "a", "fold": "fold1"})
    log = pd.read_csv(path)
    assert sorted(zip(log.run_id, log.epoch, strict=True)) == [("a", 1), ("a", 2), ("b", 1)]
    assert log[log.run_id == "a"]["val/loss"].tolist() == pytest.approx([0.1, 0.2])


def test_appending_leaves_no_lock_file_and_a_full_disk_keeps_the_old_rows(tmp_path, monkeypatch) -> None:
    """Issue 20 item 20 (ii, iii): no 0-byte ``results_log.csv.lock`` per fold; no temp file after a failed write."""
    with small_disk(tmp_path / "disk", 64 << 10, monkeypatch) as disk:
        path = disk.path / "fold1" / "results_log.csv"
        append_results(path, fold_rows([0.7]))
        append_results(path, fold_rows([0.8], epoch=2), replace={"epoch": 2})
        assert sorted(p.name for p in path.parent.iterdir()) == ["results_log.csv"]
        with pytest.raises(OSError, match="No space left"):
            append_results(path, [{**fold_rows([0.9], epoch=3)[0], "note": "x" * (128 << 10)}])
        assert list(pd.read_csv(path).epoch) == [1, 2]  # the rows written before, whole
        assert sorted(p.name for p in path.parent.iterdir()) == ["results_log.csv"]
