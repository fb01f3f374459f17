"""A grid file's rows are plain overrides: a shared ``grid.csv`` cannot name code (rule (a)/(c) of src/trust.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from src.errors import UnsafeFileError
from src.hpsearch.grid import read_grid_file


def test_a_grid_file_of_plain_values_is_read(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text("job,optimizer.lr,normalizer.source,overrides\n0,1e-3,ref.png,x\n1,1e-4,,y\n")
    assert read_grid_file(path) == [(0, ["optimizer.lr=1e-3", "normalizer.source=ref.png"]), (1, ["optimizer.lr=1e-4"])]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("model.backbone._target_", "builtins.open"),
        ("hydra.job.chdir", "true"),
        ("loss.kind", "outputs.runs.run1.fold1.evil"),
        ("optimizer.lr", "${oc.env:LR}"),
    ],
)
def test_a_grid_file_naming_code_is_refused(tmp_path: Path, column: str, value: str) -> None:
    path = tmp_path / "grid.csv"
    path.write_text(f"job,optimizer.weight_decay,{column}\n0,0.1,1e-3\n1,0.2,{value}\n")
    with pytest.raises(
        UnsafeFileError, match=rf"(?s){re.escape(str(path))} was not run: .*\n  - job 1: [^\n]*{re.escape(column)}"
    ):
        read_grid_file(path)
