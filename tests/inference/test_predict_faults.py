"""predict.py on bad input: bad slides are reported by name with their reason while the others complete
(exit status 1); files that are not our checkpoints, and inputs that cannot be evaluated, stop at once."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from src.config import REPO_ROOT
from src.demo.dicom import write_dicom_wsi
from src.demo.svs import write_svs
from src.errors import AnnotationError, ConfigError, UnsafeFileError
from tests.conftest import SHARED_DATA
from tests.inference.conftest import run_predict, validation_slides
from tests.payloads import save_with_payload

BROKEN = SHARED_DATA / "slides" / "broken.svs"
NO_MPP = SHARED_DATA / "slides" / "boxes.tiff"


@pytest.mark.skipif(not BROKEN.is_file() or not NO_MPP.is_file(), reason="../shared/data/slides is absent")
def test_bad_slides_are_reported_and_the_others_complete(
    tiny_run: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    good = validation_slides(tiny_run / "fold1")[0]
    blank = tmp_path / "blank.svs"
    write_svs(blank, np.full((1024, 1024, 3), 245, np.uint8), mpp=0.5)  # a slide of glass only
    (dicom,) = write_dicom_wsi(tmp_path / "dicom", np.full((256, 256, 3), 200, np.uint8), mpp=0.5)
    slides = [data_dir / "demo" / "slides" / f"{good}.svs", BROKEN, NO_MPP, blank, dicom]
    out = tmp_path / "out"
    argv = ["predict.py", f"model_path={tiny_run / 'fold1'}", f"outdir={out}", "heatmaps=false"]
    argv.append("slides=[" + ",".join(map(str, slides)) + "]")
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(REPO_ROOT / "predict.py"), run_name="__main__")  # the command line, in this process
    assert exit_status.value.code == 1
    captured = capsys.readouterr()
    stdout = captured.out
    assert "5 slide(s)" in stdout, captured.err
    assert "5 slide(s): 1 predicted" in stdout and "4 failed" in stdout
    failed = {line.split()[1].rstrip(":"): line for line in stdout.splitlines() if "FAILED" in line}
    assert "not a TIFF" in failed["broken"] and str(BROKEN) in failed["broken"]
    # the hints name predict.py's keys, not train.py's (project.mpp_override, dataset.backend)
    assert "no usable microns-per-pixel" in failed["boxes"] and "set it with mpp_override=" in failed["boxes"]
    assert "project." not in failed["boxes"]
    assert "no tissue" in failed["blank"]
    # a DICOM file with the tiffslide backend: extraction's rule and message (not tifffile's "not a TIFF")
    assert failed["level0"].endswith(
        f"SlideError: unsupported format for backend tiffslide: {dicom}; use backend=openslide"
    )
    report = pd.read_csv(out / "report.csv").set_index("slide")
    assert report.status.to_dict() == {
        good: "done",
        "broken": "failed",
        "boxes": "failed",
        "blank": "failed",
        "level0": "failed",
    }
    assert (out / "slides" / good / "tile_predictions.parquet").is_file()
    assert pd.read_csv(out / "slide_predictions.csv").slide.tolist() == [good]


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    for content in ("hello", "not a checkpoint"):  # torch fails on these in two ways
        text.write_text(content)
        with pytest.raises(ValueError, match=r"notes\.ckpt (is not a checkpoint this version|was not loaded)"):
            run_predict(text, tmp_path / "out", f"slides={tmp_path}")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(ValueError, match=r"plain.ckpt .*not written by src.training.Trainer"):
        run_predict(plain, tmp_path / "out", f"slides={tmp_path}")
    marker = tmp_path / "ran"
    payload = save_with_payload(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeFileError, match=r"evil\.ckpt was not loaded"):
        run_predict(payload, tmp_path / "out", f"slides={tmp_path}")
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"neither a checkpoint .* nor a run folder"):
        run_predict(tmp_path, tmp_path / "out", f"slides={tmp_path}")


def test_an_incompatible_checkpoint_is_a_clear_error(tiny_run: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(tiny_run / "fold1" / "checkpoints" / "epoch1.ckpt", weights_only=True)
    del checkpoint["workbench_params"]["clinical_encoder"]  # as a checkpoint of another version would lack it
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=r"old.ckpt is not a checkpoint this version .*KeyError: 'clinical_encoder'"):
        run_predict(tmp_path / "old.ckpt", tmp_path / "out", f"slides={tmp_path}")


def test_inputs_that_cannot_be_used_stop_before_any_slide_is_read(
    tiny_run: Path, data_dir: Path, tmp_path: Path
) -> None:
    fold = tiny_run / "fold1"
    slides = data_dir / "demo" / "slides"
    with pytest.raises(ConfigError, match=r"outcomes=\['tumor_type'\] \(evaluation\) needs annotations"):
        run_predict(fold, tmp_path / "a", f"slides={slides}", "outcomes=[tumor_type]")
    with pytest.raises(ConfigError, match=r"model_path=.*does not exist"):
        run_predict(tmp_path / "missing", tmp_path / "b", f"slides={slides}")
    with pytest.raises(FileNotFoundError, match=r"has no checkpoints/epoch7\.ckpt .*it has \[1\]"):
        run_predict(fold, tmp_path / "c", f"slides={slides}", "epoch=7")
    annotations = data_dir / "demo" / "annotations.csv"
    with pytest.raises(AnnotationError, match=r"outcomes=\['os_time'\]: the model predicts \['tumor_type'\]"):
        run_predict(fold, tmp_path / "d", f"slides={slides}", f"annotations={annotations}", "outcomes=[os_time]")
    table = pd.read_csv(annotations)
    table.loc[0, "tumor_type"] = "mesothelioma"
    table.to_csv(tmp_path / "new_class.csv", index=False)
    with pytest.raises(AnnotationError, match=r"tumor_type='mesothelioma' is not a value the model knows"):
        run_predict(fold, tmp_path / "e", f"slides={slides}", f"annotations={tmp_path / 'new_class.csv'}",
                    "outcomes=[tumor_type]")  # fmt: skip
    for written in ("a", "b", "c", "d", "e"):
        assert not (tmp_path / written / "report.csv").exists()


def test_a_model_with_clinical_inputs_needs_their_columns(tiny_run: Path, data_dir: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(tiny_run / "fold1" / "checkpoints" / "epoch1.ckpt", weights_only=True)
    # the model's encoder asks for an 'age' column (width 0 keeps the weights valid: a numeric column adds 1)
    checkpoint["workbench_params"]["clinical_encoder"] = {"columns": ["age"], "numeric": {}, "categories": {"age": []}}
    torch.save(checkpoint, tmp_path / "clinical.ckpt")
    with pytest.raises(AnnotationError, match=r"The model takes the clinical input\(s\) \['age'\]: pass annotations"):
        run_predict(tmp_path / "clinical.ckpt", tmp_path / "out", f"slides={data_dir / 'demo' / 'slides'}")
