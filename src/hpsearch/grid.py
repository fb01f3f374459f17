"""Lists and grids as first-class sweeps (Slideflow's ``params=[...]`` and ``create_hp_sweep``).

``python train.py -m optimizer.lr=1e-3,1e-4 batch_size=32,64`` runs one cross-validated run per combination
(Hydra's product). Before the first job, the resolved grid is written to the sweep folder as ``grid.csv``
(one row per combination: ``job``, one column per swept key, ``overrides``), the equivalent of Slideflow's
``sweep.json``. ``hydra.sweeper.grid_file=<grid.csv>`` runs the rows of such a file instead of a product
(``hydra.sweeper.jobs=[0,3]`` picks rows by their ``job``). ``epochs`` is never swept: ``epochs=1,5`` becomes
``epochs=[1,5]``, each job's save/evaluate list. After each job, ``history.csv`` (the sweep summary) and
``best.yaml`` are refreshed (see :mod:`src.hpsearch.history`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from src.config import CONFIG_DIR
from src.config.targets import group_targets
from src.errors import UnsafeFileError
from src.hpsearch.history import best_record, write_best, write_history, write_results
from src.hpsearch.objective import infer_direction, job_record, trial_line
from src.hpsearch.sweep_info import split_override, write_sweep_file
from src.infra.files import write_text_atomic
from src.trust import override_problem

if TYPE_CHECKING:
    from hydra.plugins.launcher import Launcher
    from hydra.types import HydraContext

log = logging.getLogger(__name__)

GRID_FILE = "grid.csv"
NOT_SWEPT = ("epochs",)  # list keys whose "sweep" is one list for every job


def epochs_as_list(override: str) -> str:
    """``epochs=1,5`` → ``epochs=[1,5]``: epochs stay each job's save/evaluate list, never a swept value."""
    (parsed,) = OverridesParser.create().parse_overrides([override])
    if parsed.get_key_element().lstrip("+") not in NOT_SWEPT or not parsed.is_choice_sweep():
        return override
    values = [str(v) for v in parsed.sweep_string_iterator()]
    fixed = f"{parsed.get_key_element()}=[{','.join(values)}]"
    log.info("%s is each job's save/evaluate list, not a swept value: using %s", override, fixed)
    return fixed


def read_grid_file(path: str | Path, jobs: list[int] | None = None) -> list[tuple[int, list[str]]]:
    """The rows of a ``grid.csv`` as ``(job, overrides)``, optionally only the ``jobs`` listed.

    A grid file sets plain values only (:func:`src.trust.override_problem`): a shared file may name no code but
    the ``_target_``s of ``conf/``, no Hydra setting and no interpolation.

    Raises:
        ValueError: the file has no ``job`` column, or a listed job is not in it (names the file and jobs).
        UnsafeFileError: a cell that could name code (a ``_target_`` that ``conf/`` does not name, another ``_...``
            or ``hydra`` key, an interpolation, a dotted name: :func:`src.trust.override_problem`), naming the
            file, the job and the column.
    """
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "job" not in table.columns:
        raise ValueError(f"{path}: a grid file needs a 'job' column and one column per swept key")
    keys = [c for c in table.columns if c not in ("job", "overrides")]
    table["job"] = table["job"].astype(int)
    if jobs is not None:
        missing = sorted(set(jobs) - set(table.job))
        if missing:
            raise ValueError(f"hydra.sweeper.jobs: job(s) {missing} are not in {path} (it has {sorted(table.job)})")
        table = table[table.job.isin(jobs)]
    rows = [(int(row.job), [(k, row[k]) for k in keys if row[k] != ""]) for _, row in table.iterrows()]
    shipped = conf_targets()
    problems = [p for job, cells in rows for k, v in cells if (p := override_problem(k, v, f"job {job}", shipped))]
    if problems:
        raise UnsafeFileError(
            f"{path} was not run: a grid file holds plain values only, and nothing was run:\n  - "
            + "\n  - ".join(problems)
        )
    return [(job, [f"{k}={v}" for k, v in cells]) for job, cells in rows]


def conf_targets() -> frozenset[str]:
    """Every ``_target_`` named by a config group's options in ``conf/`` (read as text, nothing imported)."""
    return frozenset().union(*(group_targets(p.name) for p in sorted(CONFIG_DIR.iterdir()) if p.is_dir()))


class GridSweeperImpl(BasicSweeper):
    """Hydra's basic sweeper, plus the grid file, the sweep record and the per-job summary.

    Args:
        max_batch_size: Jobs launched at once (None: all), as Hydra's basic sweeper.
        params: Sweeps from the config (``hydra.sweeper.params``), e.g. a file of ``conf/hparams_search``.
        grid_file: A ``grid.csv`` to run instead of a product.
        jobs: Rows of ``grid_file`` to run (by ``job``); None = all.
    """

    # set by setup(), which Hydra calls before sweep()
    config: DictConfig
    hydra_context: HydraContext
    launcher: Launcher

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        grid_file: str | None = None,
        jobs: list[int] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.grid_file = grid_file
        self.jobs = [int(j) for j in jobs] if jobs is not None else None

    def sweep(self, arguments: list[str]) -> Any:
        """Write ``grid.csv`` and ``sweep.json``, run every job, then the summary; raise the first job error."""
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        lines = [epochs_as_list(a) for a in [*self._parse_config(), *arguments]]
        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(lines)
        swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
        (product,) = self.split_arguments(parsed, None)
        common = [o for o in product[0] if split_override(o)[0] not in {k.lstrip("+~") for k in swept}]
        if self.grid_file:  # a row's keys replace the command line's
            rows = read_grid_file(self.grid_file, self.jobs)
            common = _without(common, [o for _, own in rows for o in own])
            jobs = [(n, [*common, *own], own) for n, own in rows]
        else:
            jobs = [(n, job, [o for o in job if o not in common]) for n, job in enumerate(product)]
        self._write_grid(sweep_dir, jobs)
        write_sweep_file(sweep_dir, "grid", common, n_jobs=len(jobs))
        return self._launch_all(sweep_dir, [(n, job) for n, job, _ in jobs], common)

    def _write_grid(self, sweep_dir: Path, jobs: list[tuple[int, list[str], list[str]]]) -> None:
        rows = [
            {"job": number, **dict(split_override(o) for o in own), "overrides": " ".join(own)}
            for number, _, own in jobs
        ]
        table = pd.DataFrame(rows)
        table = table[["job", *[c for c in table.columns if c not in ("job", "overrides")], "overrides"]]
        write_text_atomic(sweep_dir / GRID_FILE, table.to_csv(index=False))
        log.info("Sweep of %d job(s); grid written to %s", len(jobs), sweep_dir / GRID_FILE)

    def _launch_all(self, sweep_dir: Path, jobs: list[tuple[int, list[str]]], common: list[str]) -> list:
        metric = str(self.config.optimized_metric)
        direction = infer_direction(metric)
        size = self.max_batch_size or len(jobs)
        records, returns = [], []
        for start in range(0, len(jobs), size):
            batch = jobs[start : start + size]
            self.validate_batch_is_legal([o for _, o in batch])
            tic = time.perf_counter()
            numbers = [n for n, _ in batch]
            if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
                results = list(self.launcher.launch([o for _, o in batch], initial_job_idx=numbers[0]))
            else:  # rows picked from a grid file keep their job numbers (and folder names)
                results = [r for n, o in batch for r in self.launcher.launch([o], initial_job_idx=n)]
            seconds = (time.perf_counter() - tic) / len(batch)  # per job (exact when launched one by one)
            for (number, job), result in zip(batch, results):
                own = dict(split_override(o) for o in job if o not in common)
                record = job_record(number, result, seconds, metric, "mean", direction, own)
                records.append(record)
                log.info(trial_line(record, best_record(records, direction), label="job"))
            returns.append(results)
            self._write_summary(sweep_dir, records, metric, direction)
        for results in returns:
            for result in results:
                _ = result.return_value  # raise the first job error, after every job ran and the summary is written
        return returns

    def _write_summary(self, sweep_dir: Path, records: list[dict], metric: str, direction: str) -> None:
        write_history(sweep_dir, records)
        best = best_record(records, direction)
        write_results(sweep_dir, best, direction, len(records))
        if best:
            write_best(sweep_dir, best, metric, "mean", "job")


def _without(common: list[str], own: list[str]) -> list[str]:
    """``common`` without the keys that ``own`` sets."""
    keys = {split_override(o)[0] for o in own}
    return [o for o in common if split_override(o)[0] not in keys]
