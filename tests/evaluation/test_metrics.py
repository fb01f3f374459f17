"""Metrics equal scikit-learn's on the same predictions, at tile, slide and patient level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

from src.evaluation.metrics import evaluate
from src.evaluation.predictions import tile_table
from src.outcomes.categorical import CategoricalOutcome
from src.outcomes.linear import LinearOutcome


def random_tiles(n_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    slides, patients, labels = [], [], []
    for p in range(15):
        label = p % n_classes
        for s in range(rng.integers(1, 3)):
            n = int(rng.integers(3, 30))
            slides += [f"p{p}s{s}"] * n
            patients += [f"p{p}"] * n
            labels += [label] * n
    labels = np.array(labels)
    logits = rng.normal(size=(len(labels), n_classes)) + 1.5 * np.eye(n_classes)[labels]
    return np.array(slides), np.array(patients), labels, logits


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def reference(keys: np.ndarray, labels: np.ndarray, probs: np.ndarray):
    """Independent mean-over-tiles reduction, written with plain loops."""
    uniq = sorted(set(keys))
    y = np.array([labels[keys == k][0] for k in uniq])
    p = np.array([probs[keys == k].mean(0) for k in uniq])
    return y, p


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_metrics_match_sklearn(n_classes: int, seed: int) -> None:
    slides, patients, labels, logits = random_tiles(n_classes, seed)
    outcome = CategoricalOutcome("y", classes=[f"c{i}" for i in range(n_classes)])
    table = tile_table([outcome], [torch.tensor(logits)], [labels[:, None].astype(np.float32)], slides, patients)
    metrics, tables = evaluate(table, [outcome])
    probs = softmax(logits)
    for level, keys in (("tile", np.arange(len(labels))), ("slide", slides), ("patient", patients)):
        y, p = (labels, probs) if level == "tile" else reference(keys, labels, probs)
        if n_classes == 2:
            expected_auc = roc_auc_score(y, p[:, 1])
        else:
            expected_auc = np.mean([roc_auc_score(y == c, p[:, c]) for c in range(n_classes)])
        assert metrics[f"{level}_auroc/y"] == pytest.approx(expected_auc, abs=1e-12)
        assert metrics[f"{level}_accuracy/y"] == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-12)
    # patient level is the mean over all the patient's tiles, not the mean of slide means
    assert len(tables["patient"]) == len(set(patients))


def test_patient_mean_is_tile_weighted() -> None:
    outcome = CategoricalOutcome("y", classes=["a", "b"])
    logits = np.log(np.array([[0.9, 0.1]] * 1 + [[0.1, 0.9]] * 3))
    table = tile_table(
        [outcome], [torch.tensor(logits)], [np.zeros((4, 1), np.float32)], ["s1", "s2", "s2", "s2"], ["p"] * 4
    )
    _, tables = evaluate(table, [outcome])
    assert tables["patient"]["y-y_pred1"].iloc[0] == pytest.approx((0.1 + 0.9 * 3) / 4)


def test_linear_r2_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    slides = np.repeat([f"s{i}" for i in range(20)], 7)
    patients = np.repeat([f"p{i // 2}" for i in range(20)], 7)
    truth = np.repeat(rng.normal(size=20), 7).astype(np.float32)
    pred = truth + rng.normal(scale=0.5, size=len(truth))
    outcome = LinearOutcome("v")
    table = tile_table([outcome], [torch.tensor(pred[:, None])], [truth[:, None]], slides, patients)
    metrics, _ = evaluate(table, [outcome])
    assert metrics["tile_r2/v"] == pytest.approx(r2_score(truth, pred), abs=1e-6)
    y, p = reference(slides, truth, pred[:, None])
    assert metrics["slide_r2/v"] == pytest.approx(r2_score(y, p[:, 0]), abs=1e-6)
    y, p = reference(patients, truth, pred[:, None])
    assert metrics["patient_r2/v"] == pytest.approx(r2_score(y, p[:, 0]), abs=1e-6)
