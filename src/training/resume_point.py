"""Which checkpoint an interrupted fold continues from, decided before any data is set up.

A fold resumes from ``checkpoints/last.ckpt``. :func:`check_resume_point` reads it first, with the
weights-only loader (nothing pickled in it is run), and checks that it is one of our full training
checkpoints. When it is not (truncated or corrupt, pickled objects beyond tensors and plain data, or not a
training checkpoint) it is renamed ``last.ckpt.unusable`` and the fold continues from its newest
``epoch{N}.ckpt`` that passes the same checks (hard-linked as ``last.ckpt``, so every DDP rank and the fit
read the same file), or, when none does, starts again from epoch 1. A warning names the file, the reason
and what happens instead.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from src.errors import UnsafeFileError
from src.infra.files import atomic_path, move_file
from src.infra.temp_files import find_leftovers, remove_leftovers
from src.models.weights_file import load_torch_file
from src.runs.naming import LAST_CHECKPOINT

log = logging.getLogger(__name__)

UNUSABLE_SUFFIX = ".unusable"
#: What a checkpoint saved by our Trainer with ``weights_only=False`` holds, and a resume needs.
TRAINING_KEYS = ("state_dict", "loops", "callbacks", "optimizer_states", "epoch")
_EPOCH_FILE = re.compile(r"epoch(\d+)\.ckpt")
PICKLED = "it holds pickled objects beyond tensors and plain data, which could run code (it was not unpickled)"


def check_resume_point(fold_dir: str | Path) -> Path | None:
    """Leave the fold's ``last.ckpt`` only if the fold can resume from it (see the module doc).

    Also deletes the temporary files of checkpoint saves killed with ``-9`` (``last.ckpt.<pid>.<hex>.partial``).
    Call it only for a fold that no live process trains.

    Args:
        fold_dir: The fold folder of an interrupted run.

    Returns:
        The fold's ``last.ckpt`` to resume from, or None: the fold starts from its first epoch.
    """
    fold_dir = Path(fold_dir)
    last = fold_dir / LAST_CHECKPOINT
    remove_leftovers([*itertools.chain(*find_leftovers(last.parent).values()), last.with_name(f".{last.name}.tmp")])
    if not last.exists():
        return None
    problem = resume_problem(last)
    if problem is None:
        return last
    aside = last.with_name(last.name + UNUSABLE_SUFFIX)
    move_file(last, aside)
    skipped: list[str] = []
    for epoch, path in epoch_checkpoints(last.parent):
        reason = resume_problem(path)
        if reason is None:
            _link(path, last)
            log.warning(
                "%s cannot be resumed from: %s. It was renamed %s; %s continues from %s (after epoch %d)%s",
                last, problem, aside.name, fold_dir.name, path.name, epoch, _skipped(skipped),
            )  # fmt: skip
            return last
        skipped.append(f"{path.name}: {reason}")
    log.warning(
        "%s cannot be resumed from: %s. It was renamed %s; %s has no epoch checkpoint to continue from%s, so it "
        "starts again from epoch 1",
        last, problem, aside.name, fold_dir.name, _skipped(skipped),
    )  # fmt: skip
    return None


def resume_problem(path: str | Path) -> str | None:
    """Why a fold cannot resume from the checkpoint at ``path`` (None: it can).

    The file is read with the weights-only loader: a pickled object beyond tensors and plain data is refused,
    never unpickled.
    """
    try:  # every checkpoint we save is a zip archive whose records carry a CRC32 (torch itself never checks it)
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "it is not a whole checkpoint archive (cut short, overwritten, or not a checkpoint)"
    if damaged is not None:
        return f"its record {damaged} fails its CRC32 check (damaged on disk or in a copy)"
    try:
        checkpoint = load_torch_file(path, mmap=True)  # the pickle is read; the checked tensors are only mapped
    except UnsafeFileError:
        return PICKLED
    except Exception as error:  # truncated, corrupt, not a torch file
        return f"it cannot be read ({type(error).__name__}: {_first_line(error)})"
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in TRAINING_KEYS):
        return f"it is not a full training checkpoint of this workbench (it lacks {', '.join(TRAINING_KEYS)})"
    missing = _epochs_without_rows(checkpoint)
    if missing:
        return f"it lacks the results rows of epoch(s) {missing} it saved (written by an older version)"
    return None


def check_resumable(path: str | Path) -> None:
    """Refuse, before any data is set up, a checkpoint that a fit cannot resume from (see :func:`resume_problem`).

    Raises:
        UnsafeFileError: the file holds pickled objects beyond tensors and plain data (it was not unpickled).
        ValueError: the file is cut short, damaged or not one of our full training checkpoints; the message
            names it and says why.
    """
    problem = resume_problem(path)
    if problem is not None:
        error = UnsafeFileError if problem == PICKLED else ValueError
        raise error(f"Cannot resume from {path}: {problem}. Resume from another checkpoint, or train from the start")


def epoch_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the ``epoch{N}.ckpt`` files in ``folder``, newest epoch first."""
    found = []
    for path in Path(folder).glob("epoch*.ckpt"):
        match = _EPOCH_FILE.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match[1]), path))
    return sorted(found, reverse=True)


def _epochs_without_rows(checkpoint: dict[str, Any]) -> list[int]:
    """Epochs the checkpoint's ``EpochOutputs`` state says it saved but holds no results row for."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).startswith("EpochOutputs") and isinstance(state, dict):
            rows = {row.get("epoch") for row in state.get("rows", []) if isinstance(row, dict)}
            return sorted(int(e) for e in state.get("saved", []) if int(e) not in rows)
    return []


def _link(source: Path, final: Path) -> None:
    """``final`` as a hard link to ``source`` (a copy where links are not allowed), atomically."""
    with atomic_path(final) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _skipped(reasons: list[str]) -> str:
    return f" (skipped: {'; '.join(reasons)})" if reasons else ""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"
