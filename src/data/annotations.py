"""Reading and validating the annotations table (one row per slide)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from src.errors import AnnotationError

REQUIRED_COLUMNS = ("patient", "slide")


def load_annotations(path: str | Path) -> pd.DataFrame:
    """Read an annotations CSV and check its required columns.

    Args:
        path: CSV with at least the columns ``patient`` and ``slide`` (one row per slide).

    Returns:
        The table with ``patient`` and ``slide`` as strings, in file order.

    Raises:
        AnnotationError: missing file, missing required column, blank or duplicated slide names.
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"Annotations file not found: {path}")
    table = pd.read_csv(path, dtype={"patient": str, "slide": str}, keep_default_na=True)
    return validate_annotations(table, source=str(path))


def validate_annotations(table: pd.DataFrame, source: str = "annotations") -> pd.DataFrame:
    """Check required columns, blank keys and duplicate slides of an annotations table.

    Args:
        table: The annotations.
        source: Where the table came from, for error messages.

    Returns:
        A copy with ``patient`` and ``slide`` as stripped strings.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise AnnotationError(f"{source}: missing required column(s) {missing}; found columns {list(table.columns)}")
    table = table.copy()
    for column in REQUIRED_COLUMNS:
        blank = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if blank.any():
            rows = [int(i) + 2 for i in table.index[blank][:5]]  # +2: header line and 1-based rows
            raise AnnotationError(f"{source}: blank '{column}' on CSV line(s) {rows}")
        table[column] = table[column].astype(str).str.strip()
    duplicated = table["slide"][table["slide"].duplicated()].unique()
    if len(duplicated):
        raise AnnotationError(f"{source}: slide(s) listed more than once: {list(duplicated[:5])}")
    return table.reset_index(drop=True)


def apply_filters(table: pd.DataFrame, filters: Mapping[str, Sequence] | None) -> pd.DataFrame:
    """Keep the rows whose value in each filter column is one of the allowed values.

    Values are compared as strings, so ``{"dataset": ["train"]}`` and ``{"stage": [1, 2]}`` both work.

    Args:
        table: The annotations.
        filters: Column → allowed values. ``None`` or empty keeps everything.

    Raises:
        AnnotationError: a filter names a column the table does not have.
    """
    if not filters:
        return table
    mask = pd.Series(True, index=table.index)
    for column, allowed in filters.items():
        if column not in table.columns:
            raise AnnotationError(f"Filter on unknown annotation column '{column}'; columns are {list(table.columns)}")
        if isinstance(allowed, str | int | float):
            allowed = [allowed]
        allowed_str = {str(v) for v in allowed}
        mask &= table[column].astype(str).isin(allowed_str)
    return table[mask].reset_index(drop=True)
