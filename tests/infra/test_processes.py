"""pid_alive: running, finished (reaped or zombie) and impossible processes; the CPUs a job may use and the
threads taken from them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.infra import processes
from src.infra.processes import (
    CpuAllocation,
    ThreadChoice,
    cgroup_cpu_quota,
    cpu_allocation,
    pid_alive,
    thread_choice,
    thread_setting,
    use_threads,
)


def test_running_finished_and_zombie_processes() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        # killed but not reaped: a zombie is not running (poll: on a loaded machine the exit can take seconds)
        deadline = time.monotonic() + 120
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert not pid_alive(child.pid) and not pid_alive(0) and not pid_alive(-5)


# --- the CPUs a job may use (issue 20 item 25) -------------------------------------------------------------


def fake_cgroups(root: Path, membership: str, files: dict[str, str]) -> Path:
    """A cgroup mount under ``root`` with ``files`` (relative path → content) and a /proc/self/cgroup file."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    proc = root / "proc_self_cgroup"
    proc.write_text(membership)
    return proc


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine of 8 CPUs without a cgroup quota, whatever this one is."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(processes, "PROC_CGROUP", tmp_path / "no_cgroup")


def test_cgroup_v2_quota_is_the_smallest_of_the_cgroup_and_its_parents(tmp_path: Path) -> None:
    proc = fake_cgroups(
        tmp_path,
        "0::/job/step\n",
        {"job/cpu.max": "300000 100000\n", "job/step/cpu.max": "max 100000\n", "cpu.max": "max 100000\n"},
    )
    assert cgroup_cpu_quota(tmp_path, proc) == 3.0
    (tmp_path / "job/step/cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 1.5
    (tmp_path / "job/cpu.max").write_text("max 100000\n")
    (tmp_path / "job/step/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, proc) is None  # no limit anywhere


def test_cgroup_v1_quota_and_a_container_view(tmp_path: Path) -> None:
    files = {"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    # inside a container the path of /proc/self/cgroup is not under the mount: its root holds the limit
    proc = fake_cgroups(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", files)
    assert cgroup_cpu_quota(tmp_path, proc) == 2.0
    (tmp_path / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path, proc) is None
    assert cgroup_cpu_quota(tmp_path, tmp_path / "no_such_file") is None


def test_the_allocation_is_the_smallest_of_slurm_the_quota_and_the_affinity(tmp_path: Path, eight_cpus) -> None:
    proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "250000 100000\n"})  # 2.5 CPUs: 3 threads
    assert cpu_allocation({}, tmp_path, proc) == CpuAllocation(3, "the cgroup CPU quota (2.5 CPUs)")
    assert cpu_allocation({"SLURM_CPUS_PER_TASK": "2"}, tmp_path, proc) == CpuAllocation(2, "SLURM_CPUS_PER_TASK=2")
    assert cpu_allocation({"SLURM_CPUS_PER_TASK": "16"}, tmp_path, proc).cpus == 3
    unlimited = cpu_allocation({"SLURM_CPUS_PER_TASK": ""}, tmp_path, tmp_path / "none")
    assert unlimited == CpuAllocation(8, "the CPU affinity", allocated=False)


def test_the_thread_count_user_setting_wins_then_the_config_then_the_allocation(eight_cpus) -> None:
    slurm = CpuAllocation(4, "SLURM_CPUS_PER_TASK=4")
    assert thread_choice("auto", 0, {}, slurm).threads == 4
    choice = thread_choice("auto", 3, {}, slurm)  # three loader workers run beside the main process
    assert choice == ThreadChoice(1, "4 CPU(s) from SLURM_CPUS_PER_TASK=4 less loader workers=3")
    assert thread_choice("auto", 9, {}, slurm).threads == 1
    assert thread_choice(6, 0, {}, slurm) == ThreadChoice(6, "torch_threads=6")
    user = thread_choice(6, 2, {"OMP_NUM_THREADS": "1"}, slurm)
    assert user.threads == 1 and "OMP_NUM_THREADS=1, set by you; torch_threads=6 is not used" in user.reason
    assert thread_choice("auto", 0, {"OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "8"}).threads == 3
    assert thread_choice("auto", 0, {"SLURM_CPUS_PER_TASK": "2"}).threads == 2  # from the environment
    for bad in ("many", 0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"torch_threads=.* must be auto \(the job's CPUs\) or a positive number"):
            thread_setting(bad)


def test_use_threads_sets_torch_logs_once_and_warns_about_too_many_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.setattr(processes, "_last_choice", None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.INFO, logger="src.infra.processes"):
            use_threads("auto", 2, "dataloader.num_workers")
            use_threads("auto", 2, "dataloader.num_workers")
        assert torch.get_num_threads() == 1
        lines = [r.getMessage() for r in caplog.records]
        chosen = "CPU threads: 1 intra-op thread(s) in this process (1 CPU(s) from SLURM_CPUS_PER_TASK=1 less %s=2)"
        assert lines.count(chosen % "dataloader.num_workers") == 1  # logged once
        too_many = "dataloader.num_workers=2 exceeds the 1 CPU(s) this job has (SLURM_CPUS_PER_TASK=1)"
        assert any(too_many in m for m in lines)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("load", "warned"), [(3.9, False), (4.1, True)])
def test_only_a_machine_twice_over_its_cpus_is_called_busy(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, load: float, warned: bool
) -> None:
    """A laptop a little over its CPUs is not warned about; a shared machine at several times them is."""
    monkeypatch.setattr(processes.os, "getloadavg", lambda: (load, load, load))
    allocation = processes.CpuAllocation(2, "the CPU affinity", allocated=False)
    with caplog.at_level(logging.WARNING, logger="src.infra.processes"):
        processes._check_load(allocation, processes.ThreadChoice(2, "the CPU affinity"))
    assert any("This machine is busy" in r.getMessage() for r in caplog.records) == warned
