"""Write files under a temporary name and rename them when complete.

A crashed job therefore never leaves a file that looks finished: the temporary file is flushed to disk
before the rename and the folder after it, so that not even a power cut between the two can leave an
empty file under the final name. A process killed outright (SIGKILL, a time limit) leaves its hidden
temporary file; the next write of the same file removes it.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

TABLE_RECORD = ".provenance.json"  # beside a pipeline table: divergence.csv -> divergence.csv.provenance.json


def table_record(table: str | os.PathLike) -> Path:
    """The path of a CSV table's record (its provenance, ``provenance.record_table``), beside it."""
    table = Path(table)
    return table.with_name(table.name + TABLE_RECORD)


def _tmp_name(path: Path) -> Path:
    # Keep the suffix so that libraries choosing a format by extension still work.
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def remove_leftovers(final: Path, prefix: str, suffix: str = "", left_by: str = "a killed process") -> None:
    """Remove the files ``<prefix><pid><suffix>`` next to ``final``: what processes writing it under such a
    temporary name left when killed outright (one job writes a file at a time)."""
    pattern = re.compile(rf"{re.escape(prefix)}\d+{re.escape(suffix)}")
    for old in final.parent.glob(f"{glob.escape(prefix)}*"):
        if pattern.fullmatch(old.name):
            with contextlib.suppress(FileNotFoundError):
                size = old.stat().st_size
                old.unlink()
                log.info("%s: removed %s (%d bytes) left by %s", final, old.name, size, left_by)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file (or a folder: the names in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched. A CSV table's record, which
    describes the table being replaced, goes just before the new table takes its name (the job that wrote the table
    writes the new record after it), so that a table is never read against another's record.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final, f".{final.stem}.tmp", final.suffix)
    tmp = _tmp_name(final)
    try:
        yield tmp
        fsync(tmp)  # the data on disk before the name points at it
        if final.suffix.lower() == ".csv":
            with contextlib.suppress(FileNotFoundError):
                table_record(final).unlink()
        os.replace(tmp, final)
        with contextlib.suppress(OSError):  # some network file systems cannot fsync a folder; the file is complete
            fsync(final.parent)  # and the rename itself
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(table, path: str | os.PathLike, float_format: str | None = None) -> None:
    """Atomically write a pandas table as CSV (no index), numbers in ``float_format``, but a ``dropout`` column
    whole (0.1234567, not 0.123457 beside a model named d0.1234567_r0; empty where missing)."""
    if "dropout" in table.columns:
        table = table.assign(dropout=[("" if d != d else str(float(d))) for d in table["dropout"]])
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format=float_format)
