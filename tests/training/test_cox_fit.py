"""A Cox model trained through the real Trainer, module and loss recovers a known risk from clinical inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index

from src.config import compose
from src.data.annotations import AnnotationError
from src.data.dataset import Dataset
from src.training.fold_trainer import build_trainer


def synthetic_cohort(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """One slide per patient; log-hazard = 1.5·x1 − 1.0·x2 (x3 is noise); ~25% censored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    risk = 1.5 * x[:, 0] - 1.0 * x[:, 1]
    event_time = rng.exponential(12 * np.exp(-risk))
    censor_time = rng.exponential(40, n)
    return pd.DataFrame(
        {
            "patient": [f"P{i:03d}" for i in range(n)],
            "slide": [f"S{i:03d}" for i in range(n)],
            "x1": x[:, 0],
            "x2": x[:, 1],
            "x3": x[:, 2],
            "os_time": np.minimum(event_time, censor_time),
            "os_event": (event_time <= censor_time).astype(int),
            "true_risk": risk,
        }
    )


def cox_cfg(tmp_path: Path, *overrides: str):
    return compose(
        [
            "loss=cox",
            "outcomes=[os_time]",
            "event_header=os_event",
            "input_header=[x1,x2,x3]",
            "model.drop_images=true",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"paths.output_dir={tmp_path}",
            *overrides,
        ]
    )


def test_clinical_cox_model_learns_known_risk(tmp_path: Path) -> None:
    table = synthetic_cohort()
    dataset = Dataset(table)
    labels, _ = dataset.labels("os_time", "cox", "os_event")
    patients = table.patient.tolist()
    train, val = dataset.select_patients(patients[:160]), dataset.select_patients(patients[160:])
    cfg = cox_cfg(tmp_path, "epochs=[6]", "batch_size=64", "optimizer.lr=0.1")
    trainer = build_trainer(cfg, tmp_path / "fold1", labels, row_info={"fold": "fold1"})
    row = trainer.train(train, val)["epochs"]["epoch6"]
    c_index = row["val/slide_c_index/os_time"]
    held_out = table.iloc[160:]
    oracle = concordance_index(held_out.os_time, -held_out.true_risk, held_out.os_event)
    assert c_index >= 0.75, (c_index, oracle)
    assert c_index >= oracle - 0.03
    weights = trainer.module.net.heads[0].weight.detach().numpy()[0]  # standardised x1, x2, x3
    assert weights[0] > 0 > weights[1]  # higher score = higher risk
    assert abs(weights[2]) < 0.3 * weights[0]
    assert (tmp_path / "fold1" / "plots" / "km_os_time_epoch6.png").exists()


def test_trainer_refuses_a_training_set_without_events(tmp_path: Path) -> None:
    table = synthetic_cohort(n=40)
    dataset = Dataset(table)
    labels, _ = dataset.labels("os_time", "cox", "os_event")
    censored = table[table.os_event == 0].patient.tolist()
    trainer = build_trainer(cox_cfg(tmp_path, "epochs=[1]"), tmp_path / "fold2", labels, row_info={"fold": "fold2"})
    with pytest.raises(AnnotationError, match="training set of fold2 has no observed event"):
        trainer.train(dataset.select_patients(censored), dataset)
