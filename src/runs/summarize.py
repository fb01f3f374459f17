"""Command line: ``python -m src.runs.summarize <run folder or name> [...]``: a run's summary of all its folds.

Writes the run folder's ``summary.json`` again over every fold it completed, and prints it, as the run itself
does when its last fold ends (``src.runs.summary``). Use it for the folds of one run that ran as separate
jobs (``validation.folds=[1],[2],[3]`` with one ``run_dir``), e.g. when one of them is re-run later, or to see
the folds completed so far. A name that is not a folder is looked up in the repository's ``outputs/runs/``
(``paths.output_dir``'s default; ``--runs`` for another folder): ``<runs>/<name>``, else the newest
``<runs>/*_<name>``.

The metric bounds come from the outcomes in the folds' ``params.json``: an outcome kind from a module outside
``src/outcomes`` is imported only when named with ``--allowed-kind`` (a run folder from someone else could
otherwise make this command run its code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.errors import UnsafeFileError
from src.evaluation.results_log import format_summary
from src.runs.naming import CONFIG_FILE, SUMMARY_FILE
from src.runs.summary import write_summary

DEFAULT_RUNS = Path(__file__).resolve().parents[2] / "outputs" / "runs"  # conf/paths/default.yaml's


def find_run(name: str, runs: str | Path = DEFAULT_RUNS) -> Path:
    """The run folder of ``name``: the folder itself, ``<runs>/<name>``, else the newest ``<runs>/*_<name>``.

    Raises:
        FileNotFoundError: no such run folder (names where it looked).
    """
    for candidate in (Path(name), Path(runs) / name):
        if (candidate / CONFIG_FILE).exists():
            return candidate
    stamped = sorted(p for p in Path(runs).glob(f"*_{name}") if (p / CONFIG_FILE).exists())
    if stamped:
        return stamped[-1]
    raise FileNotFoundError(
        f"no run folder {name!r}: neither {name} nor {Path(runs) / name} nor {Path(runs)}/*_{name} holds a "
        "config.yaml (give the folder of a run, or --runs for another runs folder)"
    )


def main(argv: list[str] | None = None) -> int:
    """Summarise each run named on the command line.

    Returns:
        The exit status: 0; 1 when a run has no completed fold; 2 when a run folder is not found or names code
        that is not allowed.
    """
    parser = argparse.ArgumentParser(prog="python -m src.runs.summarize", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folder(s), or run name(s) in --runs")
    parser.add_argument("--runs", dest="runs_dir", default=str(DEFAULT_RUNS), help="folder of run folders")
    parser.add_argument(
        "--allowed-kind",
        dest="allowed_kinds",
        action="append",
        default=[],
        metavar="MODULE",
        help="an outcome kind outside src/outcomes that the runs' params.json may name (repeatable)",
    )
    args = parser.parse_args(argv)
    status = 0
    for name in args.runs:
        try:
            folder = find_run(name, args.runs_dir)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        try:
            summary, record = write_summary(folder, allowed_kinds=args.allowed_kinds)
        except UnsafeFileError as error:
            print(
                f"error: {error}\nIf you trust this run folder: --allowed-kind <module> for each kind", file=sys.stderr
            )
            return 2
        print(f"{folder}: {len(record['folds'])} completed fold(s) ({', '.join(record['folds']) or 'none'})")
        print(format_summary(summary, record["epoch"], record.get("strategy") or ""))
        print(f"Summary: {folder / SUMMARY_FILE}")
        status = status or int(not record["folds"])
    return status


if __name__ == "__main__":
    sys.exit(main())
