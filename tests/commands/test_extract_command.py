"""What ``extract.py`` runs (``src.commands.extract``): no torch in the process, the returned failure count, and
``python -m src.extraction`` as the same command."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.commands.extract import run
from src.config import REPO_ROOT, compose
from src.extraction.report import REPORT_NAME

NO_TORCH = """
import sys
import extract
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
assert not loaded, f"importing extract.py loaded {loaded[:5]}"
"""


def test_importing_extract_py_loads_neither_torch_nor_torchvision() -> None:
    # a fresh interpreter: this one has torch already (every SLURM task of extract.py would pay ~1 GB for it)
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_run_reports_the_failed_slides_and_returns_their_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slides_dir, shards = tmp_path / "slides", tmp_path / "shards"
    slides_dir.mkdir()
    annotations = tmp_path / "annotations.csv"
    pd.DataFrame({"patient": ["p1"], "slide": ["gone"]}).to_csv(annotations, index=False)
    cfg = compose(
        [
            f"project.slides_dir={slides_dir}",
            f"project.shards_dir={shards}",
            f"project.annotations={annotations}",
            "project.demo=null",
            "progress=false",
            "part=1/1",
        ],
        config_name="extract",
    )
    assert run(cfg) == 1  # extract.py exits with status 1
    out = capsys.readouterr().out
    assert "Part 1/1: 1 of 1 slides" in out and "FAILED gone: " in out and ", 1 failed" in out
    report = pd.read_csv(next(shards.glob(f"*/{REPORT_NAME}")), keep_default_na=False)
    assert report[["slide", "status"]].values.tolist() == [["gone", "failed"]]


def test_python_m_src_extraction_runs_extract_py(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    alias = REPO_ROOT / "src" / "extraction" / "__main__.py"
    monkeypatch.setattr(sys, "argv", [str(alias), "--cfg", "job", "slides=all"])
    runpy.run_module("src.extraction", run_name="__main__")
    out = capsys.readouterr().out
    assert "slides: all\n" in out and "tiles:\n" in out  # conf/extract.yaml, composed by extract.py's main
