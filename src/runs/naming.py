"""The names in a run folder, and the one function that picks (or makes) the folder of a new run.

A run folder (``outputs/runs/<time>_<hex>_<name>`` of ``python train.py``) holds::

    config.yaml      the resolved config (a resume compares the config composed now with it)
    splits.json      the folds, their patients and slides (src.data.splits)
    status.json      running / completed / failed / pruned (src.runs.status)
    summary.json     mean, sd and 95% interval of every metric over the completed folds (src.runs.summary)
    .run.lock        held by a job while it joins the run or writes its summary (src.runs.jobs)
    .attempts/       one file per attempt, for the DDP ranks waiting for rank 0 (src.runs.status)
    fold<k>/         one per fold: fold_status.json once completed, checkpoints/last.ckpt while it trains

``predict.py``'s output folders (``outputs/predict/<time>_<hex>``) are picked by the same
:func:`output_folder`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.json"
STATUS_FILE = "status.json"
SUMMARY_FILE = "summary.json"
RUN_LOCK = ".run.lock"
#: Folder of a run folder holding one small file per attempt (DDP token): its state for the waiting ranks.
ATTEMPTS_DIR = ".attempts"
#: In a fold folder: the fold is finished, with its results rows (``src.runs.folds``).
FOLD_STATUS = "fold_status.json"
#: In a fold folder: the end of the fold's last finished epoch (``src.training.resumable.LastCheckpoint``).
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def output_folder(chosen: str | Path | None, parent: str | Path, name: str = "") -> Path:
    """The folder a command writes into, created if needed: ``chosen``, else Hydra's job folder, else a new one.

    A new folder is ``<parent>/<time>_<6 hex>[_<name>]``: two commands started in the same second never share
    one.

    Args:
        chosen: The folder the user named (``run_dir=``, ``outdir=``); None or empty: not named.
        parent: Where a new folder goes (``paths.output_dir/runs``, ``paths.output_dir/predict``).
        name: Appended to a new folder's name (the run's ``name``).
    """
    if chosen:
        path = Path(chosen)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        path = Path(parent) / f"{stamp}_{uuid.uuid4().hex[:6]}{f'_{name}' if name else ''}"
    path.mkdir(parents=True, exist_ok=True)
    return path
