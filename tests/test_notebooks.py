"""The notebooks in notebooks/ execute top to bottom (on a tiny demo, via their `parameters` cell)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from src.config import REPO_ROOT
from tests.conftest import tiny_overrides

NOTEBOOKS = REPO_ROOT / "notebooks"


def run_notebook(name: str, overrides: list[str]) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with its parameters cell replaced by ``overrides``; return it executed."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, f"{name} needs exactly one cell tagged `parameters`"
    parameters[0].source = f"overrides = {overrides!r}"
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    return notebook


@pytest.mark.slow  # ~30 s: a Jupyter kernel (a fresh Python that imports torch) and a fit
def test_trainer_api_notebook(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    notebook = run_notebook("trainer_api.ipynb", [*tiny_overrides(data_dir, out), "+trainer.limit_train_batches=3"])
    text = "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "slide AUROC from the table" in text
    model_dir = out / "notebook_trainer_api"
    assert (model_dir / "checkpoints" / "epoch1.ckpt").exists()
    assert (model_dir / "predictions" / "slide_val_epoch1.parquet").exists()
