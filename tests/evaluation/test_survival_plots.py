"""Kaplan-Meier plot: median split of patient risk, lifelines' log-rank p-value, a PNG per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from lifelines.statistics import logrank_test

from src.evaluation.plots import outcome_plots
from src.evaluation.survival_plots import logrank_p, risk_groups
from src.outcomes.cox import CoxOutcome

OUTCOME = CoxOutcome("os", event="os_event")


def patient_table(seed: int = 0, n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = rng.exponential(np.exp(-risk)) * 20
    return pd.DataFrame(
        {"patient": [f"p{i}" for i in range(n)], "os-time": time, "os-event": (rng.random(n) < 0.7).astype(int)}
    ).assign(**{"os-risk": risk})


def test_median_split_and_logrank_match_lifelines() -> None:
    table = patient_table()
    risk = table["os-risk"].to_numpy()
    high = risk_groups(risk)
    assert high.sum() == len(risk) // 2 and (risk[high].min() > risk[~high].max())
    t, e = table["os-time"].to_numpy(), table["os-event"].to_numpy()
    expected = logrank_test(t[high], t[~high], e[high], e[~high]).p_value
    assert logrank_p(t, e, high) == expected
    assert np.isnan(logrank_p(t, e, np.zeros(len(t), bool)))  # one group: no test


def test_tied_risks_at_median_go_low() -> None:
    assert risk_groups(np.array([1.0, 1.0, 1.0, 2.0])).tolist() == [False, False, False, True]


def test_km_plot_written_per_epoch(tmp_path: Path) -> None:
    tables = {"tile": patient_table(1), "slide": patient_table(1), "patient": patient_table(1)}
    for epoch in (1, 2):
        (path,) = outcome_plots(tables, [OUTCOME], tmp_path, epoch)
        assert path == tmp_path / f"km_os_epoch{epoch}.png" and path.stat().st_size > 10_000
    constant = {k: v.assign(**{"os-risk": 0.0}) for k, v in tables.items()}  # one group only: still a plot
    (path,) = outcome_plots(constant, [OUTCOME], tmp_path, 3)
    assert path.exists()
