"""What a sweep leaves in its folder: ``history.csv``, ``best.yaml``, ``optimization_results.yaml``, plots.

``history.csv`` has one row per trial (or grid job): ``trial``, ``state`` (complete | failed | pruned |
interrupted | running), every searched hyper-parameter as its own column, ``objective``, the fold ``mean``
and ``sd`` of the optimised metric, one column per fold, ``seconds``, ``run_folder`` and the ``reason`` of a
failure. ``best.yaml`` is a primary config that re-runs the best trial:
``python train.py --config-dir <sweep folder> --config-name best``. :func:`load_search` reads both back.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import yaml
from omegaconf import OmegaConf

from src.hpsearch.sweep_info import split_override
from src.infra.files import atomic_path, write_text_atomic
from src.trust import inside

log = logging.getLogger(__name__)

HISTORY_FILE = "history.csv"
BEST_FILE = "best.yaml"
RESULTS_FILE = "optimization_results.yaml"
FIRST_COLUMNS = ["trial", "state"]
LAST_COLUMNS = ["objective", "mean", "sd", "seconds", "run_folder", "reason"]


def history_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trial: ``trial``, ``state``, the parameters, the objective and folds, seconds, folder, reason.

    Args:
        records: ``{"trial", "state", "params": {...}, "objective", "mean", "sd", "folds": {name: value},
            "seconds", "run_folder", "reason"}`` per trial.
    """
    rows, params, folds = [], [], []
    for record in records:
        row = {k: record.get(k) for k in [*FIRST_COLUMNS, *LAST_COLUMNS]}
        for key, value in (record.get("params") or {}).items():
            params += [key] if key not in params else []
            row[key] = value
        for fold, value in (record.get("folds") or {}).items():
            folds += [fold] if fold not in folds else []
            row[fold] = value
        rows.append(row)
    folds.sort(key=lambda f: (len(f), f))
    columns = [*FIRST_COLUMNS, *params, *LAST_COLUMNS[:3], *folds, *LAST_COLUMNS[3:]]
    return pd.DataFrame(rows, columns=columns)


def write_history(sweep_dir: Path, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Write ``history.csv`` atomically; returns the table."""
    table = history_table(records)
    with atomic_path(sweep_dir / HISTORY_FILE) as tmp:
        table.to_csv(tmp, index=False)
    return table


def best_record(records: Sequence[Mapping[str, Any]], direction: str) -> Mapping[str, Any] | None:
    """The complete record with the best objective (first one on ties), or None when none completed."""
    done = [r for r in records if r.get("state") == "complete" and _finite(r.get("objective"))]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    first = -1 if direction == "maximize" else 1  # on ties, the earliest trial
    return pick(done, key=lambda r: (r["objective"], first * r["trial"]))


def write_best(sweep_dir: Path, best: Mapping[str, Any], metric: str, objective: str, label: str) -> Path | None:
    """Write ``best.yaml``: a primary config re-running the best trial (its group choices and overrides).

    It reads the trial's ``.hydra/overrides.yaml`` and ``.hydra/hydra.yaml``: every config-group choice is
    pinned in its defaults list, every value override becomes a key. Returns None when those files are gone, or
    when the trial's folder (a study's trial attribute, read from its storage) is not inside ``sweep_dir``.
    ``best.yaml`` is a config like any other: it runs what the trial ran (a ``model.backbone._target_`` given on
    the command line included), so it is run only from a sweep folder one trusts, as any shared config.
    """
    job_dir = Path(str(best.get("job_dir")))
    if not inside(sweep_dir, job_dir):  # rule (d) of src.trust: a path read from a file stays in its folder
        log.warning(
            "best.yaml not written: the best trial's folder %s is not inside the sweep folder %s", job_dir, sweep_dir
        )
        return None
    overrides_file, hydra_file = job_dir / ".hydra" / "overrides.yaml", job_dir / ".hydra" / "hydra.yaml"
    if not overrides_file.exists() or not hydra_file.exists():
        log.warning("best.yaml not written: %s has no .hydra/overrides.yaml", job_dir)
        return None
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    choices = cast(dict[str, Any], OmegaConf.to_container(OmegaConf.load(hydra_file).hydra.runtime.choices))
    groups = {g for g in choices if g != "hydra" and not g.startswith("hydra/")}
    defaults: list[Any] = ["train"]
    defaults += [
        {f"override /{g}": choices[g]} for g in sorted(groups) if choices[g] is not None and g != "hparams_search"
    ]
    defaults.append("_self_")
    values = [o for o in overrides if _rerun_value(split_override(o)[0], groups) and not o.startswith("~")]
    body = cast(dict[str, Any], OmegaConf.to_container(OmegaConf.from_dotlist([o.lstrip("+") for o in values])))
    mean = best.get("mean")
    header = [
        f"# Best {label} {best['trial']} of sweep {sweep_dir.name}: objective {best['objective']:.4f} ({objective} of "
        f"{metric}; fold mean {mean:.4f}).",
        f"# Re-run: python train.py --config-dir {sweep_dir} --config-name best",
        f"# Its overrides: {' '.join(overrides)}",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump({"defaults": defaults, **body}, sort_keys=False)
    path = sweep_dir / BEST_FILE
    write_text_atomic(path, text)
    return path


def write_results(sweep_dir: Path, best: Mapping[str, Any] | None, direction: str, n_trials: int) -> None:
    """Write ``optimization_results.yaml`` as the Optuna plugin does (``name``, ``best_params``, ``best_value``).

    Adds the best trial's number, the direction and the number of trials.
    """
    record = {
        "name": "optuna",
        "best_params": dict(best["params"]) if best else None,
        "best_value": float(best["objective"]) if best else None,
        "best_trial": int(best["trial"]) if best else None,
        "direction": direction,
        "n_trials": n_trials,
    }
    write_text_atomic(sweep_dir / RESULTS_FILE, yaml.safe_dump(record, sort_keys=False))


def write_plots(sweep_dir: Path, study: Any) -> None:
    """Optimization history (Optuna's matplotlib plot) and hyper-parameter importances, replaced atomically.

    Importances are Optuna's ``get_param_importances`` with the mean-decrease-impurity evaluator (a seeded
    scikit-learn random forest; optuna 2.10's own importance plot does not run on current matplotlib). They
    need two complete trials with different objectives; until then the picture is skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return
    plots = {"optimization_history.png": lambda: optuna_plots.plot_optimization_history(study).figure}
    if len(complete) >= 2 and len({t.value for t in complete}) > 1 and complete[0].params:
        plots["param_importances.png"] = lambda: _importance_figure(study, plt)
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = draw()
            try:
                with atomic_path(sweep_dir / name) as tmp:
                    figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
            finally:
                plt.close(figure)
        except Exception as error:  # a picture must never stop a sweep
            log.warning("%s not drawn: %s", name, error)


def _importance_figure(study: Any, plt: Any) -> Any:
    from optuna.importance import MeanDecreaseImpurityImportanceEvaluator, get_param_importances

    importances = get_param_importances(study, evaluator=MeanDecreaseImpurityImportanceEvaluator(seed=0))
    names = list(importances)[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    axes.barh(names, [importances[n] for n in names], color="tab:blue")
    axes.set_xlabel("importance (mean decrease in impurity)")
    axes.set_title(f"Hyper-parameter importances ({len(study.trials)} trials)")
    return figure


def load_search(sweep_dir: str | Path) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    """``(best, history)`` of a sweep folder, as Slideflow's ``smac_search`` returns them.

    Args:
        sweep_dir: A sweep folder (``hydra.sweep.dir``) written by the grid or Optuna sweeper.

    Returns:
        ``best``: ``{"trial", "params", "value", "direction", "best_yaml"}`` (None when no trial completed);
        ``history``: ``history.csv`` as a DataFrame.

    Raises:
        FileNotFoundError: the folder has no ``history.csv`` (not a sweep folder, or no trial finished yet).
    """
    sweep_dir = Path(sweep_dir)
    history_path = sweep_dir / HISTORY_FILE
    if not history_path.exists():
        raise FileNotFoundError(f"{history_path} does not exist: is {sweep_dir} a sweep folder (hydra.sweep.dir)?")
    history = pd.read_csv(history_path)
    results_path = sweep_dir / RESULTS_FILE
    results = yaml.safe_load(results_path.read_text()) if results_path.exists() else {}
    if not results or results.get("best_trial") is None:
        return None, history
    best = {
        "trial": results["best_trial"],
        "params": results["best_params"],
        "value": results["best_value"],
        "direction": results["direction"],
        "best_yaml": str(sweep_dir / BEST_FILE),
    }
    return best, history


def _rerun_value(key: str, groups: set[str]) -> bool:
    """Whether an override is a value to keep in ``best.yaml`` (not a group choice, sweep or Hydra key)."""
    return key not in groups and not key.startswith(("hydra.", "hparams_search"))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
