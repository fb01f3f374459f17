"""Experiment loggers built generically from ``conf/logger/`` (CSV, W&B, TensorBoard, or your own).

Each entry of the ``logger`` group is a ``_target_`` node instantiated as written, except for the keys
that only the run knows; they are filled in when the YAML has them:

- ``save_dir``: replaced by the fold folder;
- ``name: null``: the run name ``{name}-{fold}``;
- ``group: null``: the run id (the run folder's name), so W&B groups a run's folds; in a sweep, the sweep
  id (so W&B groups the sweep's jobs), with ``job_type: null`` set to the job's run id (its folds);
- ``id: null``: the fold's logger run id (kept in the fold folder), so a resumed fold continues its W&B run
  (with ``resume: allow`` in the YAML).
- ``tags: null``: in a sweep, ``sweep:<id>``, ``job:<n>`` and the job's own overrides (else no tags).

A logger without ``save_dir`` (e.g. one that sends metrics elsewhere) needs nothing else. Every logger
gets the resolved config through ``log_hyperparams``, and is finalized (W&B runs finished) when the fit
ends, also when it fails. At the end the fold's final metrics (its last results row) go into a W&B run's
summary and, for TensorBoard, into its hyper-parameters view (``log_hyperparams(config, metrics=...)``).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger


def configure_wandb_env() -> None:
    """Run W&B offline unless the user has configured a key, so nothing blocks without network."""
    if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")


def build_loggers(
    logger_cfg: Mapping[str, Any] | None,
    save_dir: str | Path,
    name: str,
    group: str | None,
    hparams: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    tags: list[str] | None = None,
    job_type: str | None = None,
) -> list[Logger]:
    """Instantiate every logger of the ``logger`` group.

    Args:
        logger_cfg: The ``logger`` group (name → ``_target_`` node), or None.
        save_dir: The fold folder (for loggers whose YAML has ``save_dir``).
        name: Run name for loggers whose YAML has ``name: null``.
        group: Run id for loggers whose YAML has ``group: null``.
        hparams: The resolved config, sent with ``log_hyperparams``.
        run_id: Logger run id for loggers whose YAML has ``id: null`` (None leaves it to the logger).
        tags: Tags for loggers whose YAML has ``tags: null`` (see :func:`sweep_tags`).
        job_type: Job type for loggers whose YAML has ``job_type: null`` (a sweep job's run id).
    """
    configure_wandb_env()
    loggers = []
    for node in (logger_cfg or {}).values():
        fill: dict[str, Any] = {}
        if "save_dir" in node:
            fill["save_dir"] = str(save_dir)
        if "name" in node and node["name"] is None:
            fill["name"] = name
        if "group" in node and node["group"] is None:
            fill["group"] = group
        if "id" in node and node["id"] is None and run_id is not None:
            fill["id"] = run_id
        if "tags" in node and node["tags"] is None:
            fill["tags"] = list(tags or [])
        if "job_type" in node and node["job_type"] is None and job_type is not None:
            fill["job_type"] = job_type
        logger = instantiate(node, **fill)
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)  # Lightning passes None; W&B warns that the setting has no effect
        if hparams:
            logger.log_hyperparams(dict(hparams))
        loggers.append(logger)
    return loggers


def sweep_tags(row_info: Mapping[str, Any]) -> list[str] | None:
    """Tags of a sweep job's runs: ``sweep:<id>``, ``job:<n>`` and each own override; None outside a sweep.

    Args:
        row_info: The fold's results-row columns (``sweep_id``, ``sweep_job``, ``sweep_overrides`` in a sweep).
    """
    if "sweep_id" not in row_info:
        return None
    tags = [f"sweep:{row_info['sweep_id']}", f"job:{row_info['sweep_job']}"]
    tags += [t for t in str(row_info.get("sweep_overrides") or "").split() if t]
    return [t[:64] for t in tags]  # W&B's limit per tag


def logger_group(row_info: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(group, job_type)`` of a fold's runs: ``(run id, None)``, or ``(sweep id, run id)`` in a sweep."""
    if "sweep_id" in row_info:
        return str(row_info["sweep_id"]), row_info.get("run_id")
    return row_info.get("run_id"), None


def finish_loggers(
    loggers: Sequence[Logger],
    status: str,
    final: Mapping[str, Any] | None = None,
    hparams: Mapping[str, Any] | None = None,
) -> None:
    """Record the final metrics, finalize each logger, and finish a W&B-style run that was started.

    Every logger is finalized, also when recording the metrics fails (the error is raised afterwards).

    Args:
        loggers: The fold's loggers.
        status: ``success`` or ``failed``.
        final: The fold's final metrics (its last results row): a W&B run's summary; TensorBoard's
            hyper-parameter view (with ``hparams``).
        hparams: The resolved config, sent again with the metrics to loggers whose ``log_hyperparams``
            takes ``metrics`` (TensorBoard).
    """
    numbers = {k: float(v) for k, v in (final or {}).items() if _is_number(v)}
    errors: list[BaseException] = []
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)  # only if the run was started: never start one here
        try:
            if numbers and experiment is not None and hasattr(experiment, "summary"):
                experiment.summary.update(numbers)
            if numbers and hparams and "metrics" in inspect.signature(logger.log_hyperparams).parameters:
                logger.log_hyperparams(dict(hparams), metrics=numbers)
        except Exception as error:
            errors.append(error)
        logger.finalize(status)
        if experiment is not None and callable(getattr(experiment, "finish", None)):
            experiment.finish()
    if errors:
        raise errors[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
