"""Opening the pipeline's own files with one-line errors that name the file: an HDF5 file of a known
format, a CSV table with known columns. Each caller passes its error class and what the file is."""
from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, Sequence

import h5py

from .atomic import table_record
from .provenance import sha256_file

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


def group_beyond(f: h5py.File, layers: int) -> str | None:
    """The first group ``layer<K>`` of ``f`` with K beyond 1..``layers`` (its ``layers`` attribute), or None: every
    stage reads the layers the attribute names and would leave such a group out without a word."""
    numbers = sorted(int(m[1]) for m in (re.fullmatch(r"layer([0-9]+)", k) for k in f) if m)
    beyond = [k for k in numbers if not 1 <= k <= layers]
    return f"layer{beyond[0]}" if beyond else None


def read_table(path: str | os.PathLike, columns: Sequence[str], what: str, error: type[Exception],
               allow_empty: bool = False, **read_csv: Any) -> "pd.DataFrame":
    """A CSV table that must exist, parse, hold ``columns`` and at least one row (else ``error``).

    ``allow_empty``: the header alone is a table too (one that describes nothing by design)."""
    import pandas as pd

    if not os.path.isfile(path):
        raise error(f"{path}: {what} not found")
    check_record(path, error)
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


def check_record(path: str | os.PathLike, error: type[Exception]) -> None:
    """A table beside which lies its record (``<table>.provenance.json``, which every pipeline job and command
    writes) must be the table the record describes (its ``table_sha256``), else ``error``: a table cut short at a line
    or changed since would read as a smaller or other table that looks whole. A table without a record (one made
    by hand or by a library call) is read as it is."""
    record = table_record(path)
    if not record.is_file():
        return
    try:
        with open(record, encoding="utf-8") as fh:
            written = json.load(fh)
        wanted = written["table_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise error(f"{record}: not a readable table record ({type(exc).__name__}: {exc}); write its table again, "
                    "or remove the record to read the table as it is") from None
    if sha256_file(path) != wanted:
        rule, command = written.get("rule"), written.get("command")
        again = (f"write it again (snakemake --forcerun {rule})" if isinstance(rule, str) and rule
                 else f"write it again ({command})" if isinstance(command, str) and command else "write it again")
        raise error(f"{path}: not the table its record {record.name} describes (SHA-256 differs): cut "
                    f"short or changed since it was written; {again}, or remove the record to read it as it is")


def refuse_rows(table: "pd.DataFrame", bad: Any, col: str, must: str, path: str | os.PathLike,
                error: type[Exception]) -> None:
    """Raise ``error`` naming the first row where ``bad`` (a boolean mask over the rows) holds, by its line in the
    file (the header is line 1), and its value of ``col``: ``{path}: column {col} must hold {must}; line 9 has -5``."""
    import numpy as np

    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.argmax(bad))
        value = table[col].iloc[i]
        empty = value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))
        shown = ("no value (an empty cell or nan)" if empty
                 else f"{value:g}" if isinstance(value, (int, float, np.number)) else repr(value))
        raise error(f"{path}: column {col} must hold {must}; line {i + 2} has {shown}")


def refuse_unnamed(table: "pd.DataFrame", columns: Sequence[str], path: str | os.PathLike,
                   error: type[Exception]) -> None:
    """Each of ``columns`` (``model``, ``text``) holds a name in every row, else ``error`` naming the line: pandas
    leaves an empty name out of every grouping, so a model went missing from a figure across models."""
    for col in columns:
        refuse_rows(table, table[col].isna().to_numpy(), col, f"the {col}'s name", path, error)


def refuse_mixed(table: "pd.DataFrame", columns: Sequence[str], path: str | os.PathLike, error: type[Exception],
                 rule: str) -> None:
    """Each of ``columns`` holds one value in every row (a table of one model, of one text), else ``error``:
    ``{path}: the rows of 2 models (d0.0_r0, d0.1_r0); {rule}``."""
    for col in columns:
        names = sorted(set(table[col].astype(str)))
        if len(names) > 1:
            raise error(f"{path}: the rows of {len(names)} {col}s ({', '.join(names)}); {rule}")


def number_columns(table: "pd.DataFrame", columns: Sequence[str], path: str | os.PathLike, error: type[Exception],
                   whole: Sequence[str] = (), may_be_empty: Sequence[str] = ()) -> None:
    """``columns`` of ``table`` made numbers in place; a cell that is empty or not a number (a whole number, for the
    columns among ``whole``) is refused by its line (:func:`refuse_rows`): a table that every job fills leaves no
    cell empty, and pandas would drop an empty key from a grouping or a blank from a mean without a word; nor does
    it write an infinite number (``inf``, which a mean or a figure would carry on). A column among ``may_be_empty``
    may hold empty cells (where its number does not apply), but no text."""
    import numpy as np
    import pandas as pd

    for col in columns:
        number = pd.to_numeric(table[col], errors="coerce")
        bad = number.isna() & (table[col].notna() if col in may_be_empty else True)
        if col in whole:
            bad |= ~np.isfinite(number) | (number != number.round())
        refuse_rows(table, bad.to_numpy(), col, "whole numbers" if col in whole else "numbers", path, error)
        refuse_rows(table, np.isinf(number).to_numpy(), col, "finite numbers", path, error)
        table[col] = number.astype("int64") if col in whole else number


def read_tables(paths: Sequence[str | os.PathLike], columns: Sequence[str], numbers: Sequence[str], what: str,
                error: type[Exception], whole: Sequence[str] = (), may_be_empty: Sequence[str] = ()
                ) -> "pd.DataFrame":
    """The tables of several jobs (one per model), one under the other: each read as :func:`read_table` does (it
    exists, parses, holds ``columns`` and a row), its ``numbers`` (``whole`` among them: whole numbers) filled with
    numbers in every row (:func:`number_columns`; ``may_be_empty``: or empty), and, where it has a ``model`` column,
    one model's."""
    import pandas as pd

    frames = []
    for path in paths:
        table = read_table(path, columns, what, error)
        number_columns(table, numbers, path, error, whole, may_be_empty)
        if "model" in table.columns:
            refuse_unnamed(table, ["model"], path, error)
            refuse_mixed(table, ["model"], path, error, f"a {what} is one model's")
        frames.append(table)
    if not frames:
        raise error(f"no {what}s given")
    return pd.concat(frames, ignore_index=True)
