"""The demo project: determinism, annotation schema, label consistency, readable slides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.demo.generate import ANNOTATION_COLUMNS, DemoProject, make_annotations
from src.slides.discover import find_slides
from src.slides.reader import open_slide

PATIENT_COLUMNS = [c for c in ANNOTATION_COLUMNS if c != "slide"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> DemoProject:
    demo = DemoProject(tmp_path_factory.mktemp("a"), seed=7, n_patients=12, slide_px=640)
    demo.ensure()
    return demo


def test_default_annotations_schema_and_balance() -> None:
    table = make_annotations(seed=0)
    assert list(table.columns) == ANNOTATION_COLUMNS
    patients = table.drop_duplicates("patient")
    assert len(patients) == 26 and 30 <= len(table) <= 34
    assert table["slide"].is_unique
    assert set(table["site"]) == {"site_A", "site_B", "site_C", "site_D"}
    assert set(table["tumor_type"]) == {"adenocarcinoma", "squamous"}
    assert (table.groupby("site")["tumor_type"].nunique() == 2).all()
    counts = patients["tumor_type"].value_counts()
    assert abs(counts["adenocarcinoma"] - counts["squamous"]) <= 2
    assert 0.15 <= (patients["dataset"] == "holdout").mean() <= 0.3
    assert set(table["dataset"]) == {"train", "holdout"}
    assert table["tumor_cellularity"].between(10, 90).all()
    assert (table["os_time"] > 0).all() and set(table["os_event"]) == {0, 1}
    assert 0.6 <= patients["os_event"].mean() <= 0.8
    assert table["age"].between(40, 85).all()
    assert set(table["stage"]) <= {"I", "II", "III"}


def test_survival_depends_on_the_look() -> None:
    from lifelines import CoxPHFitter

    table = pd.concat([make_annotations(seed=s).drop_duplicates("patient") for s in range(8)])
    frame = pd.DataFrame(
        {
            "cellularity": table["tumor_cellularity"] / 40,
            "squamous": (table["tumor_type"] == "squamous").astype(float),
            "os_time": table["os_time"],
            "os_event": table["os_event"],
        }
    )
    cox = CoxPHFitter().fit(frame, "os_time", "os_event")
    assert cox.params_["cellularity"] > 0.5 and cox.params_["squamous"] > 0.3


def test_files_readable_and_labels_shared(project: DemoProject) -> None:
    table = pd.read_csv(project.annotations_path)
    assert list(table.columns) == ANNOTATION_COLUMNS
    assert table["site"].nunique() >= 3
    assert list(find_slides(project.slides_dir)) == sorted(table["slide"])
    per_patient = table.groupby("patient")[PATIENT_COLUMNS].nunique()
    assert (per_patient == 1).all().all()
    assert (table.groupby("patient").size() == 2).any()
    with open_slide(project.slides_dir / f"{table['slide'][0]}.svs") as reader:
        assert reader.mpp == pytest.approx(0.5)
        assert reader.dimensions == (640, 640)
        assert reader.level_downsamples == [1.0, 4.0]  # 640 / 16 = 40 px: too small
        assert "|MPP = 0.5|AppMag = 20" in reader.properties["tiff.ImageDescription"]
        image = reader.read_region((0, 0), 0, (640, 640))
    assert 0.3 < (image.mean(axis=2) < 225).mean() < 0.6  # tissue cover


def test_same_seed_same_bytes_and_ensure_is_idempotent(project: DemoProject, tmp_path: Path) -> None:
    again = DemoProject(tmp_path, seed=7, n_patients=12, slide_px=640)
    again.ensure()
    assert again.annotations_path.read_bytes() == project.annotations_path.read_bytes()
    slide = pd.read_csv(again.annotations_path)["slide"].iloc[3]
    first = (project.slides_dir / f"{slide}.svs").read_bytes()
    assert (again.slides_dir / f"{slide}.svs").read_bytes() == first
    stamp = (again.slides_dir / f"{slide}.svs").stat().st_mtime_ns
    again.ensure()  # complete: nothing rewritten
    assert (again.slides_dir / f"{slide}.svs").stat().st_mtime_ns == stamp
    marker = json.loads((tmp_path / ".demo_complete.json").read_text())
    assert marker["params"]["seed"] == 7


def test_other_seed_differs_and_changed_params_regenerate(tmp_path: Path) -> None:
    assert not make_annotations(seed=1).equals(make_annotations(seed=2))
    small = DemoProject(tmp_path, seed=1, n_patients=8, slide_px=512)
    small.ensure()
    bigger = DemoProject(tmp_path, seed=1, n_patients=9, slide_px=512)
    assert not bigger.is_complete()
    bigger.ensure()
    table = pd.read_csv(bigger.annotations_path)
    assert table["patient"].nunique() == 9
    assert len(list(bigger.slides_dir.glob("*.svs"))) == len(table)


def test_labels_change_the_pixels(project: DemoProject) -> None:
    table = pd.read_csv(project.annotations_path)
    hue = {}
    for kind in ("adenocarcinoma", "squamous"):
        slides = table.loc[table["tumor_type"] == kind, "slide"]
        means = []
        for slide in slides:
            with open_slide(project.slides_dir / f"{slide}.svs") as reader:
                image = reader.read_region((0, 0), 0, (640, 640)).astype(float)
            tissue = image.mean(axis=2) < 225
            means.append(image[tissue].mean(axis=0))
        hue[kind] = np.mean(means, axis=0)
    # Squamous cytoplasm is more purple: less red relative to blue than adenocarcinoma.
    red_blue = {k: v[0] / v[2] for k, v in hue.items()}
    assert red_blue["squamous"] < red_blue["adenocarcinoma"]


@pytest.mark.slow
def test_mean_colour_no_longer_gives_the_label_away(tmp_path: Path) -> None:
    """Stain and colour nuisance overlap between types: a colour-only model is far from perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    demo = DemoProject(tmp_path, seed=0, n_patients=26, slide_px=512)  # the default demo's draws, smaller
    demo.ensure()
    table = pd.read_csv(demo.annotations_path)
    means = []
    for slide in table["slide"]:
        with open_slide(demo.slides_dir / f"{slide}.svs") as reader:
            image = reader.read_region((0, 0), 0, reader.dimensions).astype(float)
        means.append(image[image.mean(axis=2) < 225].mean(axis=0))
    features = np.array(means)
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    squamous = (table["tumor_type"] == "squamous").to_numpy()
    model = LogisticRegression(C=10, max_iter=1000)
    scores = cross_val_predict(model, features, squamous, cv=LeaveOneOut(), method="predict_proba")[:, 1]
    assert roc_auc_score(squamous, scores) < 0.85  # was 1.0 before the nuisance was added
