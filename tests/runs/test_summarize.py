"""``python -m src.runs.summarize`` runs no code a run folder names (issue 20 item 2); reads only its folds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from src.errors import ConfigError, UnsafeFileError
from src.runs.folds import fold_names
from src.runs.summarize import main

METRIC = "val/slide_auroc/y"


def copied_run(root: Path, kind: str = "categorical", fold: str = "fold1") -> Path:
    """A completed one-fold run folder under ``root/outputs/runs/run1``, as a colleague would share it."""
    folder = root / "outputs" / "runs" / "run1"
    (folder / "fold1").mkdir(parents=True)
    (folder / "config.yaml").write_text("epochs: [1]\n")
    (folder / "splits.json").write_text(
        json.dumps({"strategy": "k_fold", "folds": [{"name": fold, "train_patients": ["a"], "val_patients": ["b"]}]})
    )
    rows = [{"run_id": "run1", "fold": "fold1", "epoch": 1, METRIC: 0.75}]
    (folder / "fold1" / "fold_status.json").write_text(json.dumps({"status": "completed", "rows": rows}))
    outcome = {"kind": kind, "name": "y", "classes": ["a", "b"], "event": None}
    (folder / "fold1" / "params.json").write_text(json.dumps({"outcomes": [outcome]}))
    return folder


def test_a_run_folder_outcome_kind_is_not_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Item 2: ``outcomes[0].kind`` names a module inside the run folder; summarize must not import it."""
    evil = "outputs.runs.run1.fold1.evil"
    folder = copied_run(tmp_path, kind=evil)
    marker = tmp_path / "marker"
    (folder / "fold1" / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as from the repository root: outputs/runs/... is importable
    assert main([str(folder)]) == 2
    error = capsys.readouterr().err
    assert f"{folder / 'fold1' / 'params.json'} was not used" in error
    assert f"outcomes[0].kind='{evil}' is not an allowed outcome kind" in error
    assert f"allowed_kinds=['{evil}']" in error and "--allowed-kind" in error
    assert not marker.exists() and not (folder / "summary.json").exists()
    # the control: allowed explicitly, the module is imported (and is no outcome kind)
    with pytest.raises(ConfigError, match="Unknown outcome kind"):
        main([str(folder), "--allowed-kind", evil])
    assert marker.exists()
    for name in [m for m in sys.modules if m.startswith("outputs")]:
        del sys.modules[name]


def test_a_shipped_kind_summarizes(tmp_path: Path, capsys) -> None:
    folder = copied_run(tmp_path)
    assert main([str(folder)]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["folds"] == ["fold1"] and summary["metrics"][METRIC]["mean"] == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../fold1", "fold1/../../x", ""])
def test_fold_names_of_a_run_are_plain_folder_names(tmp_path: Path, name: str) -> None:
    """Item 3: the summary reads ``<run>/<fold name>/``; a fold name from splits.json is one plain name."""
    folder = copied_run(tmp_path, fold=name)
    with pytest.raises(UnsafeFileError, match=r"splits\.json: folds\[0\]\.name=.* is not a plain name"):
        fold_names(folder)
    assert fold_names(copied_run(tmp_path / "other")) == ["fold1"]
