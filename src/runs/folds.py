"""The folds of a run folder: their names, which completed, and the marker that says a fold is done.

A fold is completed when its folder holds ``fold_status.json`` (:func:`mark_fold_completed`), written with
its results rows once those rows reached the project's ``results_log.csv``: a fold with this file is never
trained again (a resume keeps it, a job of the run asking for it has nothing to do), and the run's summary is
computed from these rows (``src.runs.summary``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from src.data.splits import load_splits
from src.evaluation.results_log import json_safe
from src.infra.files import write_json_atomic
from src.runs.naming import FOLD_STATUS, LAST_CHECKPOINT, SPLITS_FILE


def fold_names(folder: str | Path, numbers: Sequence[int] | None = None) -> list[str] | None:
    """The names of the folds numbered ``numbers`` (None: all) in the run's ``splits.json``; None without one.

    Each name was checked to be a plain folder name (``src.trust``): a fold never writes outside its run.
    """
    path = Path(folder) / SPLITS_FILE
    if not path.exists():
        return None
    names = [fold.name for fold in load_splits(path, "the run's splits.json")[1]]
    return names if not numbers else [names[n - 1] for n in numbers if 1 <= n <= len(names)]


def fold_folders(folder: str | Path) -> list[str]:
    """The names of the run's fold folders (``fold*``), sorted."""
    return sorted(p.name for p in Path(folder).glob("fold*") if p.is_dir())


def missing_folds(folder: str | Path, numbers: Sequence[int] | None) -> list[str] | None:
    """The folds numbered ``numbers`` (None: all) that the run has not completed; None: no splits.json."""
    names = fold_names(folder, numbers)
    return None if names is None else [n for n in names if not (Path(folder) / n / FOLD_STATUS).exists()]


def folds_completed(folder: str | Path, numbers: Sequence[int] | None) -> bool:
    """Whether the run completed the folds numbered ``numbers`` (None: all of its ``splits.json``)."""
    return bool(fold_names(folder, numbers)) and not missing_folds(folder, numbers)


def incomplete_folds(folder: str | Path) -> list[str]:
    """Fold folders of the run without ``fold_status.json``: a job trained them and did not finish."""
    return [name for name in fold_folders(folder) if not (Path(folder) / name / FOLD_STATUS).exists()]


def mark_fold_completed(fold_dir: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``fold_status.json`` (status, time, the fold's results rows) and drop the no longer needed last.ckpt.

    Call it only once the rows are in the project's results log: a fold with this file is never trained again.
    """
    fold_dir = Path(fold_dir)
    record = {
        "status": "completed",
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "epochs": [row.get("epoch") for row in rows],
        "rows": json_safe([dict(row) for row in rows]),  # NaN → null (strict JSON); read back as NaN
    }
    write_json_atomic(fold_dir / FOLD_STATUS, record)
    (fold_dir / LAST_CHECKPOINT).unlink(missing_ok=True)  # the last epoch is also in its epoch{N}.ckpt


def completed_fold_rows(fold_dir: str | Path) -> list[dict[str, Any]] | None:
    """The results rows of a completed fold (from ``fold_status.json``), or None when it is not completed."""
    path = Path(fold_dir) / FOLD_STATUS
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("status") != "completed":
        return None
    return [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in record["rows"]]


def completed_rows(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Fold name → its results rows, for every fold the run completed (in ``splits.json`` order).

    A folder without ``splits.json`` (copied by hand) is read from its fold folders.
    """
    names = fold_names(folder)
    if names is None:
        names = fold_folders(folder)
    rows = {name: completed_fold_rows(Path(folder) / name) for name in names}
    return {name: fold_rows for name, fold_rows in rows.items() if fold_rows is not None}


def resume_point(fold_dir: str | Path) -> Path | None:
    """The fold's ``last.ckpt`` (the end of its last finished epoch), or None when it has none."""
    path = Path(fold_dir) / LAST_CHECKPOINT
    return path if path.exists() else None


def unfinished_fold_dirs(folder: str | Path, numbers: Sequence[int] | None) -> list[Path]:
    """The folders of the folds numbered ``numbers`` (None: all) that the run has not completed.

    Empty without ``splits.json``. Only plain folder names inside the run count (``src.trust`` checked them).
    """
    names = missing_folds(folder, numbers) or []
    return [Path(folder) / n for n in names if isinstance(n, str) and n not in ("", ".", "..") and Path(n).name == n]
