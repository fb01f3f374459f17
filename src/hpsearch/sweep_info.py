"""What a job knows about the sweep it runs in: sweep id, job number and its own overrides.

Both sweepers write ``sweep.json`` into the sweep folder before the first job starts; it names the sweep
and lists the overrides shared by every job (the command line's fixed ones). A job's *own* overrides are
the rest of its Hydra task overrides: the combination of a grid, or the parameters of an Optuna trial.
Under Hydra's stock sweepers (no ``sweep.json``) every task override counts as the job's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from src.infra.files import write_text_atomic

SWEEP_FILE = "sweep.json"
PARAM_PREFIX = "hp."  # results-row column of a swept key: ``hp.optimizer.lr``
STUDY_SWEEPER = "hydra_plugins.workbench_sweepers.StudySweeper"  # hydra.sweeper._target_ of our Optuna sweeper


def study_location(storage: str | None, study_name: str | None, sweep_dir: Path) -> tuple[str, str]:
    """A study's storage and name: ``hydra.sweeper.storage`` / ``study_name``, or their defaults.

    The defaults are ``sqlite:///<sweep dir>/study.db`` and the sweep folder's name. The sweeper and each
    trial's job (:mod:`src.hpsearch.pruning`) both take them from their own config, never from a file.
    """
    return storage or f"sqlite:///{sweep_dir / 'study.db'}", study_name or sweep_dir.name


def write_sweep_file(sweep_dir: str | Path, kind: str, common_overrides: list[str], **fields: Any) -> dict:
    """Write ``sweep.json`` atomically (before the first job, so every job can read it).

    Args:
        sweep_dir: The sweep folder.
        kind: ``grid`` or ``optuna``.
        common_overrides: The overrides every job gets (not part of a job's own overrides).
        **fields: More JSON-ready fields (e.g. the number of jobs, the study name).

    Returns:
        The record written.
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {"sweep_id": sweep_dir.name, "kind": kind, "common_overrides": list(common_overrides), **fields}
    write_text_atomic(sweep_dir / SWEEP_FILE, json.dumps(record, indent=2, default=str))
    return record


def read_sweep_file(sweep_dir: str | Path) -> dict | None:
    """The sweep's ``sweep.json``, or None when it has none.

    Only ``kind`` (text) and ``common_overrides`` (a list of text) are read back by the workbench; the other
    fields are for people. Nothing in the file decides code, a path or a storage.

    Raises:
        ValueError: the file is not JSON, or those two fields are of another type (names the file and field).
    """
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not JSON ({error}): delete it, the sweeper writes it again") from error
    problems = []
    if not isinstance(record, dict):
        problems.append(f"it holds a {type(record).__name__}, expected a mapping")
    else:
        if not isinstance(record.get("kind", ""), str):
            problems.append(f"kind={record['kind']!r}, expected grid or optuna")
        overrides = record.get("common_overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            problems.append(f"common_overrides={overrides!r}, expected a list of overrides (text)")
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}: delete it, the sweeper writes it again")
    return record


def split_override(text: str) -> tuple[str, str]:
    """``'+optimizer.lr=1e-3'`` → ``('optimizer.lr', '1e-3')`` (``+``/``++``/``~`` prefixes dropped)."""
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def scalar(text: str) -> Any:
    """An override value as a number when it is one (``'1e-3'`` → 0.001), else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def job_sweep_info() -> dict[str, Any]:
    """Columns that tie this job's results to its sweep; empty outside a Hydra multirun.

    Returns:
        ``{"sweep_id", "sweep_job", "sweep_overrides", "hp.<key>": value, ...}``: the sweep folder's name,
        the job number (= the Optuna trial number under ``hparams_search``), the job's own overrides as one
        string, and one column per overridden key.
    """
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return {}
    sweep_dir = Path(hydra_cfg.sweep.dir)
    common = set((read_sweep_file(sweep_dir) or {}).get("common_overrides", []))
    own = [o for o in hydra_cfg.overrides.task if o not in common]
    info: dict[str, Any] = {
        "sweep_id": sweep_dir.name,
        "sweep_job": int(hydra_cfg.job.num),
        "sweep_overrides": " ".join(own),
    }
    for text in own:
        key, value = split_override(text)
        info[PARAM_PREFIX + key] = scalar(value)
    return info
