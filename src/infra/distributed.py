"""Which process of a distributed (DDP) run this is, and how the other ranks wait for rank 0.

Under ``trainer=ddp`` on one node, Lightning starts ranks 1..N-1 as copies of ``python train.py ...`` when
rank 0 reaches its first ``fit`` (with ``LOCAL_RANK``/``NODE_RANK``/``WORLD_SIZE`` set); under SLURM or
``torchrun`` every rank starts at once (``SLURM_PROCID``, ``RANK``). Either way each rank runs the whole
pipeline, so every side effect must say who does it: only rank 0 (:func:`is_main`) generates the demo,
extracts tiles, plans and writes the splits, and writes every file of the run folder; the other ranks wait
until rank 0 says it is ready (:func:`wait_until` on its attempt file, ``src.runs.status.write_attempt``, keyed
by :func:`run_token`) and then read what it wrote.

Before Lightning's process group exists the rank comes from the environment, as Lightning reads it
(``RANK``, then ``SLURM_PROCID`` when SLURM runs several tasks, then ``NODE_RANK`` and ``LOCAL_RANK``);
once it exists, from ``torch.distributed``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import torch.distributed as dist

#: Environment variable holding the id that rank 0 marks its run folder ready with (see :func:`run_token`).
TOKEN_VARIABLE = "WORKBENCH_RUN_TOKEN"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def rank() -> int:
    """The global rank of this process (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    global_rank = _env_int("RANK")
    if global_rank is not None:
        return global_rank
    if (_env_int("SLURM_NTASKS") or 1) > 1 and _env_int("SLURM_PROCID") is not None:
        return int(os.environ["SLURM_PROCID"])
    node, local = _env_int("NODE_RANK") or _env_int("GROUP_RANK") or 0, _env_int("LOCAL_RANK") or 0
    return node * (_env_int("LOCAL_WORLD_SIZE") or 1) + local if node else local  # > 0 on any node but the first


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    size = _env_int("WORLD_SIZE")
    if size is not None:
        return size
    if (_env_int("SLURM_NTASKS") or 1) > 1 and _env_int("SLURM_PROCID") is not None:
        return int(os.environ["SLURM_NTASKS"])
    return 1


def is_main() -> bool:
    """Whether this is rank 0: the process that prepares the data and writes the run's files."""
    return rank() == 0


def run_token() -> str:
    """An id shared by every rank of one attempt of a run, so a waiting rank never trusts a stale marker.

    Rank 0 sets it (in :data:`TOKEN_VARIABLE`) before Lightning starts the other ranks, which inherit it.
    Ranks started together by SLURM or ``torchrun`` derive it from their job step (and restart count);
    a single process gets a fresh one.
    """
    token = os.environ.get(TOKEN_VARIABLE)
    if token:
        return token
    if os.environ.get("SLURM_JOB_ID") and (_env_int("SLURM_NTASKS") or 1) > 1:
        parts = ["slurm", os.environ["SLURM_JOB_ID"], os.environ.get("SLURM_STEP_ID", "0")]
        token = "-".join([*parts, os.environ.get("SLURM_RESTART_COUNT", "0")])
    elif os.environ.get("TORCHELASTIC_RUN_ID"):
        token = f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    else:
        token = uuid.uuid4().hex
    os.environ[TOKEN_VARIABLE] = token
    return token


def wait_until(ready: Callable[[], bool], what: str, timeout_s: float = 24 * 3600.0, poll_s: float = 0.5) -> None:
    """Block a rank other than 0 until ``ready()`` (rank 0 finished a step), checking every ``poll_s`` seconds.

    ``ready`` may raise to stop the wait (e.g. rank 0 recorded a failure).

    Raises:
        TimeoutError: ``ready()`` stayed false for ``timeout_s`` seconds (naming ``what`` and this rank).
    """
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank()}: waited {timeout_s:.0f} s for rank 0 to {what}")
        time.sleep(poll_s)


def from_main(value: object) -> object:
    """Rank 0's ``value`` on every rank (a no-op without a process group, e.g. in one process).

    For decisions only rank 0 can take between fits, such as a study's pruner stopping the trial: every rank
    must stop, or the others would wait for rank 0 at the next fold's first collective.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
