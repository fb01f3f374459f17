"""Process helpers: whether a process is alive (locks, workers, resume, sweeps), and the CPUs a job may use.

CPU threads: torch's default (one intra-op thread per core it sees) oversubscribes a shared machine or a
cluster job given a few CPUs of a large node: at a load of 10–25, two threads per process cost ~5× the CPU
time of one, with identical losses. So every entry point (``train.py``, ``predict.py``, the extraction CLI)
takes the count from the job's allocation once at its start (:func:`use_threads`):

1. ``OMP_NUM_THREADS``, when the user set it, wins;
2. else the config key (``torch_threads=N``);
3. else ``auto``: the smallest of ``SLURM_CPUS_PER_TASK``, the cgroup CPU quota (v2 ``cpu.max``, v1
   ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, of this process's cgroup and its parents) and the CPU
   affinity, less the loader workers that run beside the main process (each of them uses one intra-op
   thread: torch sets that in every DataLoader worker).

This module imports no torch: it sets torch's threads only where torch is already imported.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Set by the user, it decides every OpenMP library's threads, torch's included; it wins over the config.
OMP_VARIABLE = "OMP_NUM_THREADS"
SLURM_VARIABLE = "SLURM_CPUS_PER_TASK"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_last_choice: tuple[int, str] | None = None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running.

    A zombie (killed but not yet reaped) is not running; a process we may not signal (another user's) is.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal check is all we have


@dataclass(frozen=True)
class CpuAllocation:
    """The CPUs this job may use.

    Attributes:
        cpus: How many.
        source: What said so, e.g. ``SLURM_CPUS_PER_TASK=4`` or ``the cgroup CPU quota (2.5 CPUs)``.
        allocated: Whether a scheduler or container set it (SLURM, a cgroup quota), not only the affinity.
    """

    cpus: int
    source: str
    allocated: bool = True


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op threads of this process and why."""

    threads: int
    reason: str


def cpu_allocation(
    environ: Mapping[str, str] | None = None, cgroup_root: Path | None = None, proc_cgroup: Path | None = None
) -> CpuAllocation:
    """The smallest of ``SLURM_CPUS_PER_TASK``, the cgroup CPU quota and the CPU affinity (os.cpu_count without one).

    Args:
        environ: The environment (default ``os.environ``).
        cgroup_root: Where the cgroup file systems are mounted.
        proc_cgroup: This process's cgroup membership (``/proc/self/cgroup``).
    """
    environ = os.environ if environ is None else environ
    candidates = []
    slurm = _positive_int(environ.get(SLURM_VARIABLE))
    if slurm:
        candidates.append(CpuAllocation(slurm, f"{SLURM_VARIABLE}={slurm}"))
    quota = cgroup_cpu_quota(cgroup_root or CGROUP_ROOT, proc_cgroup or PROC_CGROUP)
    if quota:
        candidates.append(CpuAllocation(max(1, math.ceil(quota - 1e-9)), f"the cgroup CPU quota ({quota:g} CPUs)"))
    if hasattr(os, "sched_getaffinity"):
        affinity = CpuAllocation(len(os.sched_getaffinity(0)), "the CPU affinity", allocated=False)
    else:  # macOS, Windows
        affinity = CpuAllocation(os.cpu_count() or 1, "os.cpu_count()", allocated=False)
    return min([*candidates, affinity], key=lambda a: a.cpus)  # the first of equals: SLURM, then the quota


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The smallest CPU quota (in CPUs) of this process's cgroup and its parents; ``None`` when there is none.

    cgroup v2: ``cpu.max`` (``"<quota> <period>"``, ``max`` = none). v1: ``cpu.cfs_quota_us`` (-1 = none) over
    ``cpu.cfs_period_us``, in the ``cpu`` controller's mount (``cpu,cpuacct`` or ``cpu``). Inside a container
    the cgroup path of ``/proc/self/cgroup`` may not exist under the mount: the folders that do are read.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and not controllers:  # v2 (unified)
            quotas += [_v2_quota(folder) for folder in _folders(cgroup_root, path)]
        elif "cpu" in controllers.split(","):  # v1
            mounts = [cgroup_root / controllers, cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"]
            mount = next((m for m in mounts if m.is_dir()), None)
            if mount is not None:
                quotas += [_v1_quota(folder) for folder in _folders(mount, path)]
    found = [q for q in quotas if q]
    return min(found) if found else None


def _folders(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and each of its parents up to the mount, those that exist."""
    parts = [p for p in path.strip().strip("/").split("/") if p and p != ".."]
    return [f for f in (mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)) if f.is_dir()]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return int(quota) / int(period) if quota != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def thread_setting(value: object, key: str = "torch_threads") -> int | None:
    """The config's thread setting: ``auto`` → ``None`` (take the allocation), a positive integer → it.

    Raises:
        ValueError: anything else (naming the key and what is allowed).
    """
    if str(value) == "auto":
        return None
    number = _positive_int(value) if not isinstance(value, bool) else None
    if number is None:
        raise ValueError(f"{key}={value!r} must be auto (the job's CPUs) or a positive number of threads")
    return number


def thread_choice(
    setting: object = "auto",
    workers: int = 0,
    environ: Mapping[str, str] | None = None,
    allocation: CpuAllocation | None = None,
    what: str = "loader workers",
) -> ThreadChoice:
    """This process's intra-op threads: ``OMP_NUM_THREADS``, else ``setting``, else the allocation less ``workers``.

    Args:
        setting: ``torch_threads``: ``auto`` or a number.
        workers: Loader workers (or reader threads) that run beside this process's compute.
        environ: The environment (default ``os.environ``).
        allocation: The job's CPUs (default :func:`cpu_allocation`).
        what: How to name ``workers`` in the reason (e.g. ``dataloader.num_workers``).
    """
    environ = os.environ if environ is None else environ
    number = thread_setting(setting)
    omp = _positive_int(environ.get(OMP_VARIABLE))
    if omp:
        over = f"; torch_threads={number} is not used" if number is not None and number != omp else ""
        return ThreadChoice(omp, f"{OMP_VARIABLE}={omp}, set by you{over}")
    if number is not None:
        return ThreadChoice(number, f"torch_threads={number}")
    allocation = allocation or cpu_allocation(environ)
    less = f" less {what}={workers}" if workers else ""
    return ThreadChoice(max(1, allocation.cpus - workers), f"{allocation.cpus} CPU(s) from {allocation.source}{less}")


def use_threads(setting: object = "auto", workers: int = 0, what: str = "loader workers") -> ThreadChoice:
    """Set torch's intra-op threads by :func:`thread_choice` (where torch is imported) and log the choice once.

    Also warns when ``workers`` exceed the job's CPUs, and when a busy machine gives the job no allocation.

    Args:
        setting: ``torch_threads``: ``auto`` or a number.
        workers: Processes or threads that run beside this process's compute.
        what: How to name ``workers`` in messages (e.g. ``dataloader.num_workers``).
    """
    global _last_choice
    allocation = cpu_allocation()
    choice = thread_choice(setting, workers, allocation=allocation, what=what)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    if (choice.threads, choice.reason) != _last_choice:  # once per process, again only when it changes
        _last_choice = (choice.threads, choice.reason)
        log.info("CPU threads: %d intra-op thread(s) in this process (%s)", choice.threads, choice.reason)
        check_workers(workers, what, allocation)
        _check_load(allocation, choice)
    return choice


def check_workers(workers: int, what: str, allocation: CpuAllocation | None = None) -> None:
    """Warn when ``workers`` processes (or threads) exceed the job's CPUs (naming the setting and the source)."""
    allocation = allocation or cpu_allocation()
    if workers > allocation.cpus:
        log.warning(
            "%s=%d exceeds the %d CPU(s) this job has (%s): they will wait on each other; use at most %d",
            what,
            workers,
            allocation.cpus,
            allocation.source,
            allocation.cpus,
        )


BUSY_LOAD_PER_CPU = 2.0  # a load above this many times the CPUs is "busy"


def _check_load(allocation: CpuAllocation, choice: ThreadChoice) -> None:
    """Without an allocation, a machine oversubscribed twice over slows every thread of ours (and others).

    Twice, not once: a laptop or workstation is often a little over its CPUs for a while (a browser, an editor,
    another short job); the issue is a shared machine at several times its CPUs, where threads mostly wait.
    """
    if allocation.allocated or choice.threads <= 1 or not hasattr(os, "getloadavg"):
        return
    load = os.getloadavg()[0]
    if load > BUSY_LOAD_PER_CPU * allocation.cpus:
        log.warning(
            "This machine is busy (load %.1f on %d CPU(s)) and gives this job no CPU allocation (no %s, no cgroup "
            "quota): %d threads per process will wait on each other. On a shared machine set torch_threads=1 "
            "(or OMP_NUM_THREADS=1): at a load of 10-25 that cut a fit's CPU time five-fold, with the same losses",
            load,
            allocation.cpus,
            SLURM_VARIABLE,
            choice.threads,
        )


def _positive_int(value: object) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
