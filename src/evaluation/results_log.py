"""results_log.csv: one row per run × fold × evaluated epoch, flat numeric metric columns."""

from __future__ import annotations

import fcntl
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


def append_results(path: str | Path, rows: list[Mapping]) -> None:
    """Append rows to a CSV, adding columns as needed (file-locked, so parallel folds/jobs are safe)."""
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(path.suffix + ".lock")
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        new = pd.DataFrame(list(rows))
        if path.exists() and path.stat().st_size:
            new = pd.concat([pd.read_csv(path), new], ignore_index=True)
        tmp = path.with_suffix(".tmp")
        new.to_csv(tmp, index=False)
        tmp.replace(path)
        fcntl.flock(handle, fcntl.LOCK_UN)


def summarize(rows: list[Mapping], group: str = "epoch") -> pd.DataFrame:
    """Mean, sd, n and a 95% normal interval of every numeric metric over folds, per ``group`` value."""
    table = pd.DataFrame(list(rows))
    metrics = [c for c in table.columns if "/" in c and pd.api.types.is_numeric_dtype(table[c])]
    out = []
    for key, part in table.groupby(group):
        for metric in metrics:
            values = part[metric].dropna().to_numpy(float)
            mean = float(values.mean()) if len(values) else float("nan")
            sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            half = 1.96 * sd / np.sqrt(len(values)) if len(values) > 1 else float("nan")
            out.append(
                {
                    group: key,
                    "metric": metric,
                    "mean": mean,
                    "sd": sd,
                    "n": len(values),
                    "ci95_low": mean - half,
                    "ci95_high": mean + half,
                }
            )
    return pd.DataFrame(out)
