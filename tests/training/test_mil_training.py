"""MIL on feature bags trains one tiny fold per model and outcome kind; bag-level tables, metrics and files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index
from sklearn.metrics import roc_auc_score

from src.pipeline import run
from src.training.checkpoint import load_torch_file
from tests.conf_options import mil_models

KINDS = {
    "categorical": [],
    "linear": ["experiment=demo_linear"],
    "cox": ["experiment=demo_cox"],
}
MODELS = mil_models()  # every MIL option of conf/model


def fold_dir(tmp_path: Path) -> Path:
    (fold,) = (tmp_path / "outputs" / "runs").glob("*/fold1")
    return fold


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", KINDS)
def test_each_mil_model_trains_one_fold_per_outcome_kind(tiny_cfg, tmp_path: Path, one_torch_thread, model, kind):
    overrides = [*KINDS[kind], "dataset=features", "encoder=tiny_random", f"model={model}", "validation.folds=[1]"]
    metric = run(tiny_cfg(*overrides, "batch_size=4", "dataset.bag_size=32", "model.hidden_width=16"))
    assert np.isfinite(metric)
    fold = fold_dir(tmp_path)
    predictions = sorted(p.name for p in (fold / "predictions").glob("*.parquet"))
    assert predictions == ["patient_val_epoch1.parquet", "slide_val_epoch1.parquet"]  # no tile level for MIL
    slides = pd.read_parquet(fold / "predictions" / "slide_val_epoch1.parquet")
    manifest = pd.read_csv(fold / "slide_manifest.csv")
    assert sorted(slides.slide) == sorted(manifest[manifest.dataset == "validation"].slide)
    assert (slides.n_tiles > 0).all()
    assert (fold / "checkpoints" / "epoch1.ckpt").exists()
    row = pd.read_csv(fold / "results_log.csv").iloc[-1]
    assert not any(c.startswith("val/tile_") for c in row.index)
    if kind == "categorical":
        assert row["val/slide_auroc/tumor_type"] == pytest.approx(
            roc_auc_score(slides["tumor_type-y_true"] == 1, slides["tumor_type-y_pred1"])
        )
    if kind == "cox":  # the bag is the sample: risk sets compare slides (and patients)
        patients = pd.read_parquet(fold / "predictions" / "patient_val_epoch1.parquet")
        for level, table in (("slide", slides), ("patient", patients)):
            expected = concordance_index(table["os_time-time"], -table["os_time-risk"], table["os_time-event"])
            assert row[f"val/{level}_c_index/os_time"] == pytest.approx(expected, abs=1e-9)
        assert (fold / "plots" / "km_os_time_epoch1.png").exists()


def test_patient_bags_clinical_inputs_and_params(tiny_cfg, tmp_path: Path, one_torch_thread) -> None:
    cfg = tiny_cfg(
        "experiment=demo_mil",
        "dataset.aggregation_level=patient",
        "input_header=[age,stage]",
        "validation.folds=[1]",
        "epochs=[1]",
        "optimized_metric=val/patient_auroc/tumor_type",
    )
    assert np.isfinite(run(cfg))
    fold = fold_dir(tmp_path)
    assert sorted(p.name for p in (fold / "predictions").glob("*.parquet")) == ["patient_val_epoch1.parquet"]
    patients = pd.read_parquet(fold / "predictions" / "patient_val_epoch1.parquet")
    manifest = pd.read_csv(fold / "slide_manifest.csv")
    assert sorted(patients.patient) == sorted(manifest[manifest.dataset == "validation"].patient.unique())
    params = json.loads((fold / "params.json").read_text())
    assert params["input_stats"] is None and set(params["clinical_encoder"]["numeric"]) == {"age"}
    state = load_torch_file(fold / "checkpoints" / "epoch1.ckpt")["state_dict"]
    width = state["net.heads.heads.0.weight"].shape[1]
    assert width == cfg.model.hidden_width + 1 + 3  # pooled bag + age + one-hot stage (fused after pooling)
