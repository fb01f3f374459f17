"""Which rank a process is (from the environment, as Lightning, SLURM and torchrun set it) and how rank > 0 waits."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.errors import TrialPrunedError
from src.infra import distributed
from src.runs.folder import RunFolder
from src.runs.status import write_attempt, write_status

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")
SLURM_VARIABLES = ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*RANK_VARIABLES, *SLURM_VARIABLES, distributed.TOKEN_VARIABLE, "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "rank", "world"),
    [
        ({}, 0, 1),  # one process
        ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, 1, 2),  # Lightning's re-run copy
        ({"LOCAL_RANK": "0", "NODE_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, 2, 4),  # 2nd node
        ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, 3, 4),  # torchrun
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}, 5, 8),  # srun, one task per GPU
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, 0, 1),  # one SLURM task (Lightning starts the rest)
    ],
)
def test_rank_and_world_from_the_environment(clean_env, env: dict, rank: int, world: int) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (rank, world, rank == 0)


def test_run_token_is_shared_by_inheritance_or_by_the_job_step(clean_env) -> None:
    first = distributed.run_token()
    assert distributed.run_token() == first  # kept in the environment, which Lightning's copies inherit
    clean_env.delenv(distributed.TOKEN_VARIABLE)
    for name, value in {"SLURM_NTASKS": "4", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}.items():
        clean_env.setenv(name, value)
    assert distributed.run_token() == "slurm-77-0-0"  # every task of the step derives the same one


def test_rank_1_waits_for_this_attempt_of_rank_0(clean_env, tiny_cfg, tmp_path) -> None:
    clean_env.setenv("RANK", "1")
    clean_env.setenv(distributed.TOKEN_VARIABLE, "now")
    out = tmp_path / "run"
    folder = RunFolder.open(tiny_cfg(f"run_dir={out}"))
    assert folder.path == out and folder.token == "now"
    write_attempt(out, "before", "failed", error_type="ValueError", error="old")  # an earlier attempt: keep waiting
    write_attempt(out, "other-job", "prepared")  # another job of the run (its own fold) in the same folder
    write_status(out, "failed", error_type="ValueError", error="old")
    with pytest.raises(TimeoutError, match="rank 1"):
        folder.wait_prepared(timeout_s=0.2)
    write_attempt(out, "now", "prepared")
    assert folder.wait_prepared(timeout_s=5)
    write_attempt(out, "now", "failed", error_type="ValueError", error="bad")
    with pytest.raises(RuntimeError, match=r"rank 0 failed \(ValueError: bad\)"):
        folder.wait_prepared(timeout_s=5)
    write_attempt(out, "now", "completed")
    assert not folder.wait_prepared(timeout_s=5)  # rank 0 found the run completed: nothing to do


class _StopAtOnce:
    """A pruner stand-in that stops the trial (on rank 0, the only rank that reports)."""

    def report(self, rows, folds_done) -> None:
        raise TrialPrunedError(f"pruned after {folds_done} fold(s)")


def _two_ranks(rank_: int, port: int, out: Path, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank_, world_size=2)
    try:
        value = distributed.from_main(f"from rank {rank_}")
        folder = RunFolder(out, "now", None, "run", out / "results_log.csv", pruner=_StopAtOnce())
        try:
            folder.fold_done("fold1", [{"epoch": 1, "val/metric": 0.5}], last=False)
            stopped = ""
        except TrialPrunedError as error:
            stopped = str(error)
        results[rank_] = (value, stopped)
    finally:
        dist.destroy_process_group()


def test_every_rank_stops_when_rank_0_is_pruned(tmp_path: Path) -> None:
    """Under DDP only rank 0 asks the study; the decision reaches every rank (else they would wait forever)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    # forked, not spawned: two fresh interpreters importing torch cost ~30 s on a loaded 2-core machine
    mp.start_processes(_two_ranks, args=(port, tmp_path, results), nprocs=2, join=True, start_method="fork")
    assert dict(results) == {r: ("from rank 0", "pruned after 1 fold(s)") for r in (0, 1)}
    assert (tmp_path / "fold1" / "fold_status.json").exists()  # rank 0 marked the fold before asking the study
    assert distributed.from_main("alone") == "alone"  # no process group: a no-op
