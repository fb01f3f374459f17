"""The project layer: per-slide MPP through ensure_tiles, and folds fitted to the slides that have tiles."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.data.dataset import Dataset
from src.data.splits.folds import Fold
from src.data.splits.plan import SplitPlan
from src.demo.svs import write_svs
from src.errors import AnnotationError, ConfigError
from src.extraction.shards import read_index
from src.pipeline import run
from src.project import ensure_tiles, fit_plan_to_tiles, load_project, plan_folds, prepare_tiles, slide_error_policy


def small_project(
    tiny_cfg, tmp_path: Path, patients: int, blank_patient: str | None = None, cut_patient: str | None = None
) -> tuple[Path, Path]:
    """Annotations of `patients` demo patients, half of each tumour type (one slide each), and their slide files.

    With `blank_patient`, that patient gets one more slide, ``blank_slide``: white, so no tissue tile. With
    `cut_patient`, that patient gets one slide, ``cut_slide``: a copy of a demo slide cut short (truncated).

    Returns:
        ``(annotations.csv, slides folder)``.
    """
    demo = instantiate(tiny_cfg().project.demo)
    table = pd.read_csv(demo.ensure())
    table = table.drop_duplicates("patient").groupby("tumor_type").head(patients // 2).sort_values("slide")
    slides_dir = tmp_path / "slides"
    slides_dir.mkdir()
    for slide in table.slide:
        (slides_dir / f"{slide}.svs").symlink_to(Path(demo.slides_dir) / f"{slide}.svs")
    if blank_patient:
        write_svs(slides_dir / "blank_slide.svs", np.full((512, 512, 3), 245, np.uint8), mpp=0.5)
        table = pd.concat([table, table.iloc[[0]].assign(patient=blank_patient, slide="blank_slide")])
    if cut_patient:
        whole = (Path(demo.slides_dir) / f"{table.slide.iloc[0]}.svs").read_bytes()
        (slides_dir / "cut_slide.svs").write_bytes(whole[: len(whole) // 2])
        table = pd.concat([table, table.iloc[[0]].assign(patient=cut_patient, slide="cut_slide")])
    path = tmp_path / "annotations.csv"
    table.to_csv(path, index=False)
    return path, slides_dir


def test_ensure_tiles_extracts_at_the_mpp_column_and_again_when_it_changes(tiny_cfg, tmp_path: Path) -> None:
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=2)
    table = pd.read_csv(annotations)
    first, second = table.slide.tolist()
    shards = tmp_path / "shards"

    def tiles_with(values: list) -> Dataset:
        table.assign(scan_mpp=values).to_csv(annotations, index=False)
        cfg = tiny_cfg(
            f"project.annotations={annotations}",
            f"project.slides_dir={slides_dir}",
            f"project.shards_dir={shards}",
            "project.mpp_column=scan_mpp",
            "project.mpp_override=0.3",  # both files record 0.5: not used
        )
        dataset, _ = load_project(cfg)
        return ensure_tiles(cfg, dataset)

    dataset = tiles_with([0.25, None])
    index = {slide: read_index(dataset.shard_dir, slide) for slide in (first, second)}
    assert index[first]["mpp"] == 0.25 and index[first]["mpp_source"] == "column"
    assert index[second]["mpp"] == pytest.approx(0.5) and index[second]["mpp_source"] == "slide"
    assert index[first]["grid_tiles"] < index[second]["grid_tiles"]  # 64 µm = 256 px at 0.25, 128 px at 0.5
    dataset = tiles_with([None, 1.0])
    again = {slide: read_index(dataset.shard_dir, slide) for slide in (first, second)}
    assert again[first]["mpp"] == pytest.approx(0.5) and again[second]["mpp"] == 1.0  # both extracted again


def test_ensure_tiles_names_the_patients_who_lost_all_their_slides(
    tiny_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=2, blank_patient="lonely")
    cfg = tiny_cfg(
        f"project.annotations={annotations}", f"project.slides_dir={slides_dir}", f"project.shards_dir={tmp_path}/s"
    )
    dataset, _ = load_project(cfg)
    with caplog.at_level(logging.WARNING, logger="src.project"):
        kept = ensure_tiles(cfg, dataset)
    assert "blank_slide" not in kept.slides() and "lonely" not in kept.patients().values()
    assert any("lost all their slides" in r.getMessage() and "'lonely'" in r.getMessage() for r in caplog.records)


def _plan(*folds: Fold) -> SplitPlan:
    return SplitPlan("k_fold", 0, {"k": len(folds)}, [], list(folds), trained=[f.name for f in folds])


def _dataset(patients: list[str]) -> tuple[Dataset, object]:
    table = pd.DataFrame({"patient": patients, "slide": [f"{p}-1" for p in patients], "y": ["a", "b"] * 2})
    dataset = Dataset(table)
    labels, _ = dataset.labels("y", "categorical")
    return dataset, labels


def test_fit_plan_to_tiles_keeps_only_patients_with_slides() -> None:
    plan = _plan(Fold("fold1", ["p1", "p2", "p3"], ["p4", "p5"]), Fold("fold2", ["p4", "p5", "p3"], ["p1", "p2"]))
    dataset, labels = _dataset(["p1", "p2", "p4", "p5"])  # p3's slides had no tissue tile
    fitted = fit_plan_to_tiles(plan, dataset, labels)
    assert [(f.train_patients, f.val_patients) for f in fitted.folds] == [
        (["p1", "p2"], ["p4", "p5"]),
        (["p4", "p5"], ["p1", "p2"]),
    ]
    assert fitted.dropped_patients == ["p3"]
    assert fitted.to_dict()["dropped_patients"] == ["p3"]
    assert plan.folds[0].train_patients == ["p1", "p2", "p3"]  # the plan itself (and its cache) is unchanged


def test_fit_plan_to_tiles_rejects_a_fold_left_without_validation_patients() -> None:
    plan = _plan(Fold("fold1", ["p1", "p2", "p4"], ["p3"]), Fold("fold2", ["p3", "p4"], ["p1", "p2"]))
    dataset, labels = _dataset(["p1", "p2", "p4", "p5"])
    with pytest.raises(AnnotationError, match=r"fold1: every validation patient lost all their slides.*'p3'"):
        fit_plan_to_tiles(plan, dataset, labels)


def _cut_project(tiny_cfg, tmp_path: Path, *overrides: str):
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=2, cut_patient="cut")
    cfg = tiny_cfg(
        f"project.annotations={annotations}",
        f"project.slides_dir={slides_dir}",
        f"project.shards_dir={tmp_path}/s",
        "dataset.extraction_workers=1",  # no worker processes to start: a second saved
        *overrides,
    )
    return cfg, *load_project(cfg)


def test_a_slide_that_fails_stops_the_run_by_default(tiny_cfg, tmp_path: Path) -> None:
    cfg, dataset, _ = _cut_project(tiny_cfg, tmp_path)
    assert cfg.on_slide_error == "stop"
    with pytest.raises(
        RuntimeError, match=r"1 slide\(s\) could not be prepared: cut_slide: .*truncated.*on_slide_error=skip"
    ):
        ensure_tiles(cfg, dataset)


def test_on_slide_error_skip_leaves_the_slide_out_and_names_it_in_the_plan(
    tiny_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, dataset, labels = _cut_project(tiny_cfg, tmp_path, "on_slide_error=skip")
    first, second = sorted(set(dataset.patients().values()) - {"cut"})
    plan = _plan(Fold("fold1", [first, "cut"], [second]))
    with caplog.at_level(logging.WARNING, logger="src.project"):
        kept, failed = prepare_tiles(cfg, dataset)
    assert list(failed) == ["cut_slide"] and "Slide file" in failed["cut_slide"] and "truncated" in failed["cut_slide"]
    assert "cut_slide" not in kept.slides() and "cut" not in kept.patients().values()
    assert sorted(kept.slides()) == sorted(s for s in dataset.slides() if s != "cut_slide")
    messages = [r.getMessage() for r in caplog.records]
    assert any("cut_slide" in m and "truncated" in m for m in messages)
    assert any("lost all their slides" in m and "'cut'" in m for m in messages)
    fitted = fit_plan_to_tiles(plan, kept, labels, failed)
    assert fitted.dropped_patients == ["cut"] and fitted.failed_slides == failed
    fitted.write(tmp_path / "splits.json")
    assert SplitPlan.read(tmp_path / "splits.json").failed_slides == failed


def test_on_slide_error_takes_stop_or_skip_only(tiny_cfg) -> None:
    assert slide_error_policy(tiny_cfg("on_slide_error=skip")) == "skip"  # a bad value fails composing: test_schema
    with pytest.raises(ConfigError, match=r"on_slide_error='maybe': choose one of \['stop', 'skip'\]"):
        slide_error_policy(OmegaConf.create({"on_slide_error": "maybe"}))  # a config built without the schema


def test_filters_that_keep_no_slide_say_so_naming_the_file_and_the_filters(tiny_cfg, tmp_path: Path) -> None:
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=2)
    cfg = tiny_cfg(
        f"project.annotations={annotations}",
        f"project.slides_dir={slides_dir}",
        "dataset.filters={tumor_type: [mesothelioma]}",
    )
    with pytest.raises(
        AnnotationError, match=rf"{annotations}: no slides left: dataset.filters=.*mesothelioma.* 2 slide"
    ):
        load_project(cfg)


def test_a_class_with_fewer_patients_than_folds_is_named_before_extraction(
    tiny_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20 item 10: a one-patient class exists only in validation; warned (default) or refused, before tiles."""
    annotations, slides_dir = small_project(tiny_cfg, tmp_path, patients=8)
    table = pd.read_csv(annotations)
    rare = table.patient.iloc[0]
    table.loc[table.patient == rare, "tumor_type"] = "mesothelioma"
    table.to_csv(annotations, index=False)
    shards = tmp_path / "shards"
    project = [f"project.annotations={annotations}", f"project.slides_dir={slides_dir}", f"project.shards_dir={shards}"]
    cfg = tiny_cfg(*project, "validation.k=3", "validation.cache=false")
    dataset, labels = load_project(cfg)
    with caplog.at_level(logging.WARNING):
        plan_folds(cfg, dataset, labels)
    warning = caplog.text
    assert "Outcome 'tumor_type': 1 class(es) too small for the 3 fold(s) of k_fold" in warning
    assert "'mesothelioma': 1 patient (validated but never trained on in fold" in warning
    with pytest.raises(AnnotationError, match=r"'mesothelioma': 1 patient .*validation.small_classes=error"):
        run(tiny_cfg(*project, "validation.k=3", "validation.cache=false", "validation.small_classes=error"))
    assert not shards.exists()  # refused before any tile was extracted


def test_fit_plan_to_tiles_checks_the_classes_again_when_patients_were_dropped(caplog) -> None:
    # p3 (no tissue tile) was fold2's only training patient of class b: without it fold2 validates b untrained
    plan = _plan(Fold("fold1", ["p1", "p2", "p3"], ["p4", "p5"]), Fold("fold2", ["p4", "p3"], ["p1", "p2", "p5"]))
    dataset, labels = _dataset(["p1", "p2", "p4", "p5"])  # classes a, b, a, b
    with caplog.at_level(logging.WARNING):
        fit_plan_to_tiles(plan, dataset, labels)
    assert "'b': 2 patients (validated but never trained on in fold2)" in caplog.text
    with pytest.raises(AnnotationError, match=r"'b': 2 patients .*small_classes=error"):
        fit_plan_to_tiles(plan, dataset, labels, small_classes="error")
