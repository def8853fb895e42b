"""The table of a text's points: one row per token, ``position, word, x, y`` (plus cluster columns).

Written by ``embed_tsne`` and read by every clustering and figure stage. Kept apart from
``embedding`` so that those stages import neither openTSNE nor scikit-learn nor the HDF5
reader, and do not rerun when the projection or the activations reader changes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .checked_files import check_record, refuse_rows

EMBEDDING_COLUMNS = ("position", "word", "x", "y")


def view_order(key: tuple[int, str]) -> tuple[int, int, str]:
    """Layer by layer, hidden state before cell state."""
    layer, state = key
    return int(layer), {"h": 0, "c": 1}.get(state, 2), state


def check_same_tokens(reference: pd.DataFrame, other: pd.DataFrame, path: str | os.PathLike,
                      reference_path: str | os.PathLike) -> None:
    """Refuse a table of other tokens than ``reference``'s (the same positions and words): the tables one figure or
    measure puts side by side (two linkages, the views of a text, the maps of other seeds) come from one text."""
    n = min(len(reference), len(other))
    differ = ((reference["position"].to_numpy()[:n] != other["position"].to_numpy()[:n])
              | (reference["word"].astype(str).to_numpy()[:n] != other["word"].astype(str).to_numpy()[:n]))
    if len(reference) != len(other) or differ.any():
        first = f"; line {int(np.argmax(differ)) + 2} differs first" if differ.any() else ""
        raise ValueError(f"{path}: its {len(other)} tokens are not the {len(reference)} tokens of {reference_path} "
                         f"(the same positions and words{first}): a table of another text or of another number of "
                         "tokens")


def read_same_tokens(paths: dict, reader) -> dict:
    """``{key: reader(path)}`` for ``paths`` (``{key: path}``), every table holding the first one's tokens
    (:func:`check_same_tokens`)."""
    tables, first = {}, None
    for key, path in paths.items():
        tables[key] = reader(path)
        if first is None:
            first = key
        else:
            check_same_tokens(tables[first], tables[key], path, paths[first])
    return tables


def embedding_table(positions: np.ndarray, words: list[str], xy: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"position": np.asarray(positions, dtype=np.int64), "word": list(words),
                         "x": xy[:, 0], "y": xy[:, 1]})


def write_embedding(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the table as CSV (atomically); coordinates with 6 decimals."""
    with atomic_path(path) as tmp:
        table.loc[:, list(EMBEDDING_COLUMNS) + [c for c in table.columns if c not in EMBEDDING_COLUMNS]].to_csv(
            tmp, index=False, float_format="%.6f")


def read_embedding(path: str | os.PathLike, required: tuple[str, ...] = EMBEDDING_COLUMNS) -> pd.DataFrame:
    """Read an embedding (or cluster) table; words stay strings ("null", "NaN" and "" are words too)."""
    path = Path(path)
    if path.is_file():
        check_record(path, ValueError)
    try:
        table = pd.read_csv(path, keep_default_na=False, na_filter=False, dtype={"word": str})
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(required)}")
    if table.empty:
        raise ValueError(f"{path}: no tokens (the header alone)")
    # numbers where numbers belong (a file cut short or edited by hand), named by the file's line (header: 1)
    for col, whole, least in (("position", True, 0), ("x", False, None), ("y", False, None), ("cluster", True, 1)):
        if col not in table.columns:
            continue
        number = pd.to_numeric(table[col], errors="coerce")
        bad = ~np.isfinite(number.to_numpy(dtype=np.float64))
        if whole:
            bad |= (number != number.round()).to_numpy() | (number < least).to_numpy()
        refuse_rows(table, bad, col, f"whole numbers from {least}" if whole else "finite numbers", path, ValueError)
        table[col] = number.astype(np.int64) if whole else number.astype(np.float64)
    if "position" in table.columns:  # a token twice would be clustered, counted and drawn twice
        twice = table["position"][table["position"].duplicated()]
        if len(twice):
            raise ValueError(f"{path}: position {twice.iloc[0]} is in the table more than once ({len(twice)} "
                             "repeated rows); each token's position once")
    return table
