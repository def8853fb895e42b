"""Opening the pipeline's own files with one-line errors that name the file: an HDF5 file of a known
format, a CSV table with known columns. Each caller passes its error class and what the file is."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import h5py

if TYPE_CHECKING:  # pandas is imported only when a table is read
    import pandas as pd


def open_hdf5(path: str | os.PathLike, fmt: str, what: str, error: type[Exception]) -> h5py.File:
    """``path`` opened for reading; it must exist, be HDF5 and say ``format = fmt`` (else ``error``)."""
    if not os.path.isfile(path):
        raise error(f"{path}: {what} file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise error(f"{path}: not a readable HDF5 file ({exc})") from None
    if f.attrs.get("format") != fmt:
        f.close()
        raise error(f"{path}: not a lstmscope {what} file (format must be {fmt})")
    return f


def read_table(path: str | os.PathLike, columns: Sequence[str], what: str, error: type[Exception],
               allow_empty: bool = False, **read_csv: Any) -> "pd.DataFrame":
    """A CSV table that must exist, parse, hold ``columns`` and at least one row (else ``error``).

    ``allow_empty``: the header alone is a table too (one that describes nothing by design)."""
    import pandas as pd

    if not os.path.isfile(path):
        raise error(f"{path}: {what} not found")
    try:
        table = pd.read_csv(path, **read_csv)
    except (ValueError, pd.errors.ParserError) as exc:
        raise error(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise error(f"{path}: missing columns {', '.join(missing)}")
    if table.empty and not allow_empty:
        raise error(f"{path}: {what} is empty")
    return table


def refuse_rows(table: "pd.DataFrame", bad: Any, col: str, must: str, path: str | os.PathLike,
                error: type[Exception]) -> None:
    """Raise ``error`` naming the first row where ``bad`` (a boolean mask over the rows) holds, by its line in the
    file (the header is line 1), and its value of ``col``: ``{path}: column {col} must hold {must}; line 9 has -5``."""
    import numpy as np

    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        value = table[col].iloc[i]
        shown = f"{value:g}" if isinstance(value, (int, float, np.number)) else repr(value)
        raise error(f"{path}: column {col} must hold {must}; line {i + 2} has {shown}")
