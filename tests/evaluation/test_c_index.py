"""Harrell's c-index equals lifelines' at tile, slide and patient level, with ties in time and in risk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lifelines.utils import concordance_index as lifelines_c_index

from src.evaluation.metrics import concordance_index, evaluate
from src.evaluation.predictions import tile_table
from src.outcomes.cox import CoxOutcome

OUTCOME = CoxOutcome("os", event="os_event")


def lifelines_or_nan(time: np.ndarray, risk: np.ndarray, event: np.ndarray) -> float:
    try:
        return lifelines_c_index(time, -risk, event)  # lifelines: a high score means long survival
    except ZeroDivisionError:  # no comparable pair
        return float("nan")


@pytest.mark.parametrize("seed", range(40))
def test_c_index_equals_lifelines_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    time = rng.integers(0, int(rng.integers(1, 15)), n).astype(float)  # few distinct times: many ties
    risk = rng.integers(0, int(rng.integers(1, 8)), n).astype(float)  # few distinct risks: many ties
    event = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
    expected = lifelines_or_nan(time, risk, event)
    if np.isnan(expected):
        assert np.isnan(concordance_index(time, risk, event))
    else:
        assert concordance_index(time, risk, event) == pytest.approx(expected, abs=1e-9)


def test_c_index_continuous_values_and_direction() -> None:
    rng = np.random.default_rng(0)
    time = rng.exponential(size=300)
    event = (rng.random(300) < 0.7).astype(int)
    risk = -np.log(time) + rng.normal(scale=0.5, size=300)  # high risk = early event
    c = concordance_index(time, risk, event)
    assert c == pytest.approx(lifelines_c_index(time, -risk, event), abs=1e-9)
    assert c > 0.75
    assert concordance_index(time, -risk, event) == pytest.approx(1 - c, abs=1e-9)  # no ties: c(−r) = 1 − c(r)


def test_no_event_gives_nan() -> None:
    assert np.isnan(concordance_index([1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [0, 0, 0]))


def survival_tiles(seed: int):
    """Patients with 1-2 slides of 2-20 tiles; tied patient times; tile risks rounded so they tie."""
    rng = np.random.default_rng(seed)
    slides, patients, times, events = [], [], [], []
    for p in range(25):
        time, event = float(rng.integers(1, 10)), int(rng.random() < 0.6)
        for s in range(int(rng.integers(1, 3))):
            n = int(rng.integers(2, 20))
            slides += [f"p{p}s{s}"] * n
            patients += [f"p{p}"] * n
            times += [time] * n
            events += [event] * n
    times, events = np.array(times), np.array(events)
    risk = np.round(-0.3 * times + rng.normal(size=len(times)), 1)
    return np.array(slides), np.array(patients), times, events, risk


@pytest.mark.parametrize("seed", range(3))
def test_c_index_equals_lifelines_at_every_level(seed: int) -> None:
    slides, patients, times, events, risk = survival_tiles(seed)
    targets = np.stack([times, events], axis=1).astype(np.float32)
    table = tile_table([OUTCOME], [torch.tensor(risk[:, None])], [targets], slides, patients)
    metrics, tables = evaluate(table, [OUTCOME])
    for level, keys in (("tile", np.arange(len(risk))), ("slide", slides), ("patient", patients)):
        groups = sorted(set(keys))  # independent reduction: mean of tile risks per slide / patient
        t = np.array([times[keys == k][0] for k in groups])
        e = np.array([events[keys == k][0] for k in groups])
        r = np.array([risk[keys == k].mean() for k in groups])
        assert metrics[f"{level}_c_index/os"] == pytest.approx(lifelines_c_index(t, -r, e), abs=1e-9), level
        # prediction tables carry time, event and risk at every level
        level_table = tables[level]
        for column in ("os-time", "os-event", "os-risk"):
            assert column in level_table, (level, column)
        if level != "tile":
            ordered = level_table.set_index(level).loc[groups]
            np.testing.assert_allclose(ordered["os-risk"], r, atol=1e-6)
            np.testing.assert_array_equal(ordered["os-time"], t)
            np.testing.assert_array_equal(ordered["os-event"], e)
