"""results_log.csv: one row per run × fold × evaluated epoch, flat numeric metric columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from src.infra.files import atomic_path
from src.infra.locks import FileLock


def append_results(path: str | Path, rows: Sequence[Mapping], replace: Mapping[str, object] | None = None) -> None:
    """Append rows to a CSV, adding columns as needed (file-locked, so parallel folds/jobs are safe).

    The lock (``{name}.lock``, a `src.infra.locks.FileLock`) is deleted when released, and the CSV is
    replaced atomically: after any failure (a full disk) the file holds its old rows, and no temporary file
    or lock file is left.

    Args:
        path: The CSV file.
        rows: The rows to append.
        replace: Column → value: rows already in the file that match all of these are dropped first (a resumed
            fold or epoch writes its rows again without duplicating them).
    """
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        new = pd.DataFrame(list(rows))
        if path.exists() and path.stat().st_size:
            old = pd.read_csv(path)
            if replace and set(replace) <= set(old.columns):
                same = np.logical_and.reduce([old[k].astype(str) == str(v) for k, v in replace.items()])
                old = old[~same]
            new = pd.concat([old, new], ignore_index=True) if len(old) else new
        with atomic_path(path) as tmp:
            new.to_csv(tmp, index=False)


INTERVAL_METHOD = (
    "95% Student-t interval of the fold mean; for AUROC, accuracy and c-index (in [0, 1]) it is computed on "
    "the logit scale and mapped back, for R² (≤ 1) and MAE (≥ 0) it is cut at the bound"
)
BOUND_EPSILON = 1e-3  # values at a bound are moved this far inside (relative to the range) before the transform


def summarize(
    rows: list[Mapping], group: str = "epoch", bounds: Mapping[str, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """Mean, sd, n and a 95% interval of every numeric metric over folds, per ``group`` value.

    The interval is Student's t interval of the mean (``mean ± t(0.975, n−1) · sd / √n``), which stays honest
    for the 3–5 folds of a typical cross-validation. For a metric listed in ``bounds`` the same interval is
    computed on a scale without bounds and mapped back (:func:`bounded_interval`), so an AUROC interval never
    goes above 1. With one fold, sd and the interval are NaN. Rows without any metric (e.g.
    ``validation=none`` logs only ``train/loss``) give what they have.

    Args:
        rows: Results rows (one per fold × epoch).
        group: Column to summarise per value of.
        bounds: Metric column → (low, high) bounds (``-inf``/``inf`` for none), e.g. from
            ``src.outcomes.metric_bounds``.
    """
    table = pd.DataFrame(list(rows))
    if not len(table) or group not in table.columns:
        return pd.DataFrame(columns=[group, "metric", "mean", "sd", "n", "ci95_low", "ci95_high"])
    metrics = [c for c in table.columns if "/" in c and pd.api.types.is_numeric_dtype(table[c])]
    bounds = bounds or {}
    out = []
    for key, part in table.groupby(group):
        for metric in metrics:
            values = part[metric].dropna().to_numpy(float)
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            sd = float(values.std(ddof=1)) if n > 1 else float("nan")
            low, high = bounded_interval(values, *bounds.get(metric, (-np.inf, np.inf)))
            out.append(
                {group: key, "metric": metric, "mean": mean, "sd": sd, "n": n, "ci95_low": low, "ci95_high": high}
            )
    return pd.DataFrame(out, columns=[group, "metric", "mean", "sd", "n", "ci95_low", "ci95_high"])


def bounded_interval(values: np.ndarray, low: float = -np.inf, high: float = np.inf) -> tuple[float, float]:
    """95% Student-t interval of the mean of ``values``, respecting the bounds ``[low, high]``.

    Without bounds: ``mean ± t(0.975, n−1) · sd / √n``. With both bounds (AUROC, accuracy, c-index), the
    values are mapped to the logit of their position in ``[low, high]`` (values at a bound moved
    ``BOUND_EPSILON`` of the range inside), the t interval is computed there and mapped back. With one bound
    (R² ≤ 1, MAE ≥ 0) the t interval is cut at the bound. Values that are all equal give a zero-width interval.

    Returns:
        ``(low, high)``; NaN for fewer than two values.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    t = stats.t.ppf(0.975, n - 1)
    if np.isfinite(low) and np.isfinite(high):
        span = high - low
        p = np.clip((values - low) / span, BOUND_EPSILON, 1 - BOUND_EPSILON)
        z = np.log(p / (1 - p))
        half = t * z.std(ddof=1) / np.sqrt(n)
        lower, upper = (float(low + span / (1 + np.exp(-(z.mean() + d)))) for d in (-half, half))
        return lower, upper
    half = t * values.std(ddof=1) / np.sqrt(n)
    return float(max(values.mean() - half, low)), float(min(values.mean() + half, high))


def json_safe(value):
    """``value`` with every NaN/inf float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def epoch_summary(summary: pd.DataFrame, epoch: int) -> dict[str, dict]:
    """``{metric: {mean, sd, n, ci95: [low, high]}}`` at ``epoch``, JSON-ready (``None`` where undefined)."""
    if not len(summary):
        return {}
    rows = summary[summary[summary.columns[0]] == epoch]
    return {
        r.metric: json_safe({"mean": r.mean, "sd": r.sd, "n": int(r.n), "ci95": [r.ci95_low, r.ci95_high]})
        for r in rows.itertuples()
    }


def format_summary(summary: pd.DataFrame, epoch: int, strategy: str = "") -> str:
    """The printed fold summary: one line per validation metric with mean ± sd and the 95% interval."""
    table = summary
    if len(summary):
        table = summary[(summary[summary.columns[0]] == epoch) & summary.metric.str.startswith("val/")]
    if not len(table):
        return f"No validation metrics at epoch {epoch}" + (f" (validation={strategy})" if strategy else "")
    lines = [f"Validation metrics at epoch {epoch} (over folds{', ' + strategy if strategy else ''}):"]
    for r in table.itertuples():
        if r.n > 1:
            spread = f"± {r.sd:.4f}  (95% CI {r.ci95_low:.4f} – {r.ci95_high:.4f}, n={r.n})"
        else:
            spread = f"(single fold: no sd or interval, n={r.n})"
        lines.append(f"  {r.metric:<40} {r.mean:.4f} {spread}")
    return "\n".join(lines)
