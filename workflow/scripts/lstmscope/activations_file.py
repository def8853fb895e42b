"""Reading activations files (schema: activations.py and the README), without importing torch.

Every stage that reads the activations (histograms, tracking, heatmaps, the embedding)
opens them here: the format attribute and every dataset's length are checked, and
errors name the file and the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

STATES = ("h", "c")
FORMAT = "lstmscope-activations-2"  # 2: tokens/words as the model read them, tokens/split_words


class ActivationsError(ValueError):
    """An activations file or request is wrong; the message names the file, key or value."""


REQUIRED_ATTRS = ("format", "provenance", "model", "n_tokens", "layers", "hidden_size", "dtype", "text")


def open_activations(path: str | os.PathLike) -> h5py.File:
    """Open an activations file for reading; an error names the file and what is missing."""
    path = Path(path)
    if not path.is_file():
        raise ActivationsError(f"{path}: activations file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ActivationsError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing or f.attrs["format"] != FORMAT:
            raise ActivationsError(f"{path}: not a lstmscope activations file (missing attributes: "
                                   f"{', '.join(missing) or 'none'}; format must be {FORMAT})")
        T, L = int(f.attrs["n_tokens"]), int(f.attrs["layers"])
        for key in ["tokens/ids", "tokens/words", "tokens/split_words", "expectancy", "log_expectancy",
                    *(f"layer{k}/{s}" for k in range(1, L + 1) for s in STATES)]:
            if key not in f:
                raise ActivationsError(f"{path}: dataset {key!r} is missing (file incomplete or corrupt)")
            if f[key].shape[0] != T:
                raise ActivationsError(f"{path}: dataset {key!r} has {f[key].shape[0]} rows, expected n_tokens={T}")
    except ActivationsError:
        f.close()
        raise
    except Exception as exc:  # h5py raises various errors on damaged files
        f.close()
        raise ActivationsError(f"{path}: corrupt activations file ({type(exc).__name__}: {exc})") from None
    return f


def state_dataset(f: h5py.File, layer: int, state: str) -> h5py.Dataset:
    """The dataset ``layer{layer}/{state}``; an error names the file and the layers and states that exist."""
    layers = int(f.attrs["layers"])
    if state not in STATES:
        raise ActivationsError(f"{f.filename}: state {state!r} does not exist; choose one of {', '.join(STATES)}")
    if not isinstance(layer, (int, np.integer)) or not 1 <= layer <= layers:
        raise ActivationsError(f"{f.filename}: layer {layer!r} does not exist; the file has layers 1..{layers}")
    return f[f"layer{layer}/{state}"]


def iter_rows(dataset: h5py.Dataset, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start row, block) of a (T, N) dataset in blocks of whole HDF5 chunks, as float32."""
    if rows is None:
        rows = dataset.chunks[0] if dataset.chunks else 4096
    total = dataset.shape[0]
    for start in range(0, total, rows):
        block = dataset[start:min(total, start + rows)]
        yield start, block.astype(np.float32, copy=False)


def read_words(f: h5py.File, split: bool = False) -> list[str]:
    """The tokens of the text as the model read them (``<unk>`` for a word outside its vocabulary), decoded;
    ``split``: the split's own words."""
    return [w.decode("utf-8") if isinstance(w, bytes) else str(w)
            for w in f["tokens/split_words" if split else "tokens/words"][:]]


def layers_and_states(f: h5py.File) -> list[tuple[int, str]]:
    return [(k, s) for k in range(1, int(f.attrs["layers"]) + 1) for s in STATES]
