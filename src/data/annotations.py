"""Reading and validating the annotations table (one row per slide).

Every reader of an annotations file (``train.py``, the Trainer API, ``extract.py``) goes
through :func:`read_annotations`, so a file reads the same everywhere:

- the text is UTF-8 (a byte-order mark is dropped), else cp1252 or Latin-1 with a warning naming the file;
  anything else (UTF-16, a spreadsheet saved under a ``.csv`` name) is an error naming the file;
- column names and text cells lose their surrounding spaces (``'adenocarcinoma '`` is ``'adenocarcinoma'``),
  with a warning that counts the changed cells; a cell of only spaces is blank, and a numeric column that
  had spaces around its numbers is numeric;
- a header separated by semicolons or tabs (European Excel) gets a hint in the missing-column error;
- a file with a header but no rows is an error ("no slides"), not an empty study.
"""

from __future__ import annotations

import codecs
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from src.errors import AnnotationError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient", "slide")

#: Tried in this order; Latin-1 decodes any byte, so it is the last resort.
FALLBACK_ENCODINGS = (("cp1252", "Windows Western European"), ("latin-1", "ISO-8859-1"))

#: Cells pandas reads as missing (its default ``na_values``); a stripped cell equal to one is blank too.
NA_WORDS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A"}
    | {"NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)

SEPARATORS = {";": "semicolons", "\t": "tabs"}


def load_annotations(path: str | Path) -> pd.DataFrame:
    """Read an annotations CSV and check its required columns.

    Args:
        path: CSV with at least the columns ``patient`` and ``slide`` (one row per slide).

    Returns:
        The table with ``patient`` and ``slide`` as strings, in file order.

    Raises:
        AnnotationError: missing or unreadable file, missing required column, no rows, blank or duplicated
            slide names.
    """
    return _check_keys(read_annotations(path), source=str(path))


def read_annotations(path: str | Path, required: Sequence[str] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Decode, parse and tidy an annotations CSV (see the module docstring), without checking its rows.

    Args:
        path: The CSV file.
        required: Columns the file must have.

    Returns:
        The table, ``patient`` and ``slide`` read as strings, names and text cells stripped.

    Raises:
        AnnotationError: the file is missing, not text in a known encoding, not a CSV, lacks a required
            column, or has a header but no rows (each naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"Annotations file not found: {path}")
    text = decode_text(path)
    try:
        header = pd.read_csv(io.StringIO(text), nrows=0).columns
        as_text = {c: str for c in header if _clean_name(c) in REQUIRED_COLUMNS}  # '001' stays '001'
        table = pd.read_csv(io.StringIO(text), dtype=as_text, keep_default_na=True)
    except pd.errors.EmptyDataError as error:
        raise AnnotationError(f"{path}: no slides: the file is empty (no header, no rows)") from error
    except pd.errors.ParserError as error:
        raise AnnotationError(f"{path}: not a readable CSV ({error})") from error
    return tidy_annotations(table, source=str(path), required=required)


def decode_text(path: Path) -> str:
    """The text of ``path``: UTF-8 (with or without a byte-order mark), else cp1252, else Latin-1.

    Raises:
        AnnotationError: the file has NUL bytes (UTF-16, or a binary file such as ``.xlsx``).
    """
    data = path.read_bytes()
    if b"\x00" in data:
        raise AnnotationError(
            f"{path}: not a text CSV in UTF-8, cp1252 or Latin-1 (it has NUL bytes: UTF-16, or a spreadsheet "
            "such as .xlsx?); save it as 'CSV UTF-8 (Comma delimited)'"
        )
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        not_utf8 = f"byte 0x{data[error.start]:02x} on line {line} is not UTF-8"
    for encoding, name in FALLBACK_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        log.warning(
            "%s: %s; read it as %s (%s). Check accented names and values, or save the file as 'CSV UTF-8'",
            path,
            not_utf8,
            encoding,
            name,
        )
        return text
    raise AssertionError("latin-1 decodes any byte")  # pragma: no cover


def tidy_annotations(
    table: pd.DataFrame, source: str = "annotations", required: Sequence[str] = REQUIRED_COLUMNS
) -> pd.DataFrame:
    """Strip column names and text cells (logging what changed) and check the required columns are there.

    Args:
        table: The annotations.
        source: Where the table came from, for messages.
        required: Columns the table must have.

    Returns:
        A copy with stripped names and text cells; blank-once-stripped cells are missing, and a column that
        had spaces around its numbers is numeric (the required columns stay text).

    Raises:
        AnnotationError: two column names equal once stripped, a required column is missing, or the table
            has no rows ("no slides").
    """
    table = _clean_names(table, source)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise AnnotationError(
            f"{source}: missing required column(s) {missing} (an annotations file needs {list(required)}); "
            f"found columns {list(table.columns)}{_separator_hint(table.columns)}"
        )
    if not len(table):
        raise AnnotationError(
            f"{source}: no slides: it has the columns {list(table.columns)} but no rows; "
            "add one row per slide (its patient, slide and outcome columns)"
        )
    return _strip_cells(table, source)


def validate_annotations(table: pd.DataFrame, source: str = "annotations") -> pd.DataFrame:
    """Tidy a table (as :func:`tidy_annotations`) and check its blank keys and duplicate slides.

    Args:
        table: The annotations.
        source: Where the table came from, for error messages.

    Returns:
        A copy with ``patient`` and ``slide`` as stripped strings.
    """
    return _check_keys(tidy_annotations(table, source), source)


def _check_keys(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """``patient`` and ``slide`` as strings, none blank, no slide twice."""
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


def _clean_name(name: object) -> object:
    return name.replace("\ufeff", "").strip() if isinstance(name, str) else name


def _clean_names(table: pd.DataFrame, source: str) -> pd.DataFrame:
    names = [_clean_name(c) for c in table.columns]
    if names == list(table.columns):
        return table
    clashes = sorted({str(n) for n in names if names.count(n) > 1})
    if clashes:
        raise AnnotationError(
            f"{source}: column name(s) {clashes} appear more than once once surrounding spaces are removed: "
            f"{[c for c, n in zip(table.columns, names, strict=True) if n in clashes]}"
        )
    spaced = [c for c in table.columns if isinstance(c, str) and c.replace("\ufeff", "") != _clean_name(c)]
    if spaced:
        log.warning("%s: removed the spaces around column name(s) %s", source, spaced)
    return table.set_axis(names, axis=1)


def _separator_hint(columns: Sequence[object]) -> str:
    for separator, name in SEPARATORS.items():
        if any(isinstance(c, str) and separator in c for c in columns):
            return (
                f"; the header looks separated by {name}, as Excel writes CSV in many European locales: "
                "save the file comma-separated (Excel: 'CSV UTF-8 (Comma delimited)')"
            )
    return ""


def _strip_cells(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Strip every text cell; count and log the cells that changed, with one example."""
    table = table.copy()
    counts: dict[str, int] = {}
    numeric: list[str] = []
    example = ""
    for column in table.columns:
        values = table[column]
        if not (pd.api.types.is_object_dtype(values) or isinstance(values.dtype, pd.StringDtype)):
            continue
        changed = values.map(lambda v: isinstance(v, str) and v != v.strip()).astype(bool)
        if not changed.any():
            continue
        stripped = values.map(lambda v: v.strip() if isinstance(v, str) else v)
        counts[str(column)] = int(changed.sum())
        stripped = stripped.mask(changed & stripped.isin(NA_WORDS), np.nan)
        if not example:
            row = changed.idxmax()
            slide = f"slide '{str(table.at[row, 'slide']).strip()}'" if "slide" in table.columns else f"row {row}"
            after = "blank" if pd.isna(stripped[row]) else repr(stripped[row])
            example = f"e.g. {slide} '{column}': {values[row]!r} -> {after}"
        if column not in REQUIRED_COLUMNS:
            numbers = pd.to_numeric(stripped, errors="coerce")
            if numbers.notna().sum() == stripped.notna().sum():
                stripped, numeric = numbers, [*numeric, str(column)]
        table[column] = stripped
    if counts:
        log.warning(
            "%s: removed the spaces around %d value(s) in column(s) %s, %s%s",
            source,
            sum(counts.values()),
            counts,
            example,
            f"; numeric once stripped: {numeric}" if numeric else "",
        )
    return table


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
