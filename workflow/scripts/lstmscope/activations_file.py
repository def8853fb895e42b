"""Reading activations files (schema: activations.py and the README), without importing torch.

Every stage that reads the activations (histograms, tracking, heatmaps, the embedding)
opens them here: the format attribute and every dataset's length are checked, and
errors name the file and the key.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .checked_files import group_beyond

STATES = ("h", "c")
FORMAT = "lstmscope-activations-2"  # 2: tokens/words as the model read them, tokens/split_words


class ActivationsError(ValueError):
    """An activations file or request is wrong; the message names the file, key or value."""


REQUIRED_ATTRS = ("format", "provenance", "model", "dropout", "n_tokens", "layers", "hidden_size", "dtype", "text")


class ActivationsFile(h5py.File):
    """An open activations file. Used as a context manager (``with open_activations(path) as f``), a read of its
    data that fails inside the block (a file damaged after it opened: its words' heap overwritten, a chunk index
    pointing nowhere) leaves it as an :class:`ActivationsError` naming the file, not as h5py's bare ``OSError``."""

    def __exit__(self, exc_type, exc, tb):
        path = self.filename
        ours = exc_type is not None and issubclass(exc_type, OSError) and "read data" in str(exc) and self._read_in(tb)
        super().__exit__(exc_type, exc, tb)
        if ours:
            raise ActivationsError(f"{path}: a part of it cannot be read ({exc}): the file is damaged or cut short; "
                                   "dump it again") from None

    def _read_in(self, tb) -> bool:
        """Whether the failed read was of this file's data (the innermost h5py dataset in the traceback is one of
        its datasets), not of another file read inside the block (an ablation file, say)."""
        dataset = None
        while tb is not None:
            candidate = tb.tb_frame.f_locals.get("self")
            if isinstance(candidate, h5py.Dataset):
                dataset = candidate
            tb = tb.tb_next
        try:
            return dataset is not None and dataset.file.filename == self.filename
        except Exception:  # a dataset of a file closed meanwhile
            return False


def open_activations(path: str | os.PathLike) -> ActivationsFile:
    """Open an activations file for reading; an error names the file and what is missing."""
    path = Path(path)
    if not path.is_file():
        raise ActivationsError(f"{path}: activations file not found")
    try:
        f = ActivationsFile(path, "r")
    except OSError as exc:
        raise ActivationsError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        found = str(f.attrs.get("format", ""))
        if found != FORMAT and found.startswith(FORMAT.rsplit("-", 1)[0] + "-"):  # another version's file
            raise ActivationsError(f"{path}: an activations file of format {found}, written by another version of "
                                   f"lstmscope; this one reads {FORMAT}: dump it again")
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            raise ActivationsError(f"{path}: not a lstmscope activations file (missing attributes: "
                                   f"{', '.join(missing)}; format must be {FORMAT})")
        if found != FORMAT:
            raise ActivationsError(f"{path}: not a lstmscope activations file (format is {found!r}, not {FORMAT})")
        T, L, N = (_count_attr(f, path, a) for a in ("n_tokens", "layers", "hidden_size"))
        try:  # copied into every output made from the file (histograms, ablation)
            json.loads(f.attrs["provenance"])
        except (TypeError, ValueError):
            raise ActivationsError(f"{path}: attribute provenance is not JSON "
                                   f"({str(f.attrs['provenance'])[:40]!r}): the file is damaged; dump it again") from None
        for key in ["tokens/ids", "tokens/words", "tokens/split_words", "expectancy", "log_expectancy",
                    *(f"layer{k}/{s}" for k in range(1, L + 1) for s in STATES)]:
            _check_dataset(f, path, key, T, N)
        beyond = group_beyond(f, L)
        if beyond:
            raise ActivationsError(f"{path}: attribute layers={L}, but it holds group {beyond}: the file is "
                                   "damaged; dump it again")
    except ActivationsError:
        f.close()
        raise
    except Exception as exc:  # h5py raises various errors on damaged files
        f.close()
        raise ActivationsError(f"{path}: corrupt activations file ({type(exc).__name__}: {exc})") from None
    return f


def _count_attr(f: h5py.File, path: Path, name: str) -> int:
    """The attribute ``name`` (``n_tokens``, ``layers``, ``hidden_size``): a whole number of at least 1."""
    value = f.attrs[name]
    if not (isinstance(value, (int, np.integer)) or (isinstance(value, np.ndarray) and value.shape == ()
                                                      and np.issubdtype(value.dtype, np.integer))):
        raise ActivationsError(f"{path}: attribute {name}={value!r} is not a whole number")
    if int(value) < 1:
        raise ActivationsError(f"{path}: attribute {name}={int(value)}; it must be at least 1 "
                               "(an empty or unfinished dump?)")
    return int(value)


def _check_dataset(f: h5py.File, path: Path, key: str, T: int, N: int) -> None:
    """``key`` must be there with ``n_tokens`` rows: ``layerK/h|c`` (T, hidden_size) floats, the others (T,) --
    ids integers, words strings, expectancies floats. Shapes and dtypes only: the data (GBs) is not read."""
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise ActivationsError(f"{path}: dataset {key!r} is missing (file incomplete or corrupt)")
    ds = f[key]
    state = key.startswith("layer")
    want = "(n_tokens, hidden_size)" if state else "(n_tokens,)"
    if ds.ndim != (2 if state else 1):
        raise ActivationsError(f"{path}: dataset {key!r} has shape {ds.shape}, expected {want} = "
                               f"{(T, N) if state else (T,)}")
    if ds.shape[0] != T:
        raise ActivationsError(f"{path}: dataset {key!r} has {ds.shape[0]} rows, expected n_tokens={T}")
    if state and ds.shape[1] != N:
        raise ActivationsError(f"{path}: {key} has {ds.shape[1]} columns, hidden_size says {N}")
    if key == "tokens/ids":
        ok, kind = np.issubdtype(ds.dtype, np.integer), "integers"
    elif key.startswith("tokens/"):
        ok, kind = h5py.check_string_dtype(ds.dtype) is not None, "strings"
    else:
        ok, kind = np.issubdtype(ds.dtype, np.floating), "floating-point numbers"
    if not ok:
        raise ActivationsError(f"{path}: dataset {key!r} holds {ds.dtype}, expected {kind}")


def state_dataset(f: h5py.File, layer: int, state: str) -> h5py.Dataset:
    """The dataset ``layer{layer}/{state}``; an error names the file and the layers and states that exist."""
    layers = int(f.attrs["layers"])
    if state not in STATES:
        raise ActivationsError(f"{f.filename}: state {state!r} does not exist; choose one of {', '.join(STATES)}")
    if not isinstance(layer, (int, np.integer)) or not 1 <= layer <= layers:
        raise ActivationsError(f"{f.filename}: layer {layer!r} does not exist; the file has layers 1..{layers}")
    return f[f"layer{layer}/{state}"]


def read_neurons(f: h5py.File, layer: int, state: str, neurons, start: int = 0, stop: int | None = None,
                 dtype: type | None = np.float64) -> np.ndarray:
    """Tokens [``start``, ``stop``) of ``neurons`` (an int: one column; a sorted list: a (T, k) block) of
    ``layer{layer}/{state}``, as ``dtype`` (None: as stored). A value that is not finite (no LSTM state is) is an
    :class:`ActivationsError` naming the file, the dataset, the token and the neuron: a figure or page would draw
    it as a gap or a colour."""
    values = state_dataset(f, layer, state)[start:stop, neurons]
    values = values if dtype is None else values.astype(dtype)
    bad = ~np.isfinite(values)
    if bad.any():
        at = np.argwhere(bad)[0]
        token = start + int(at[0])
        neuron = int(neurons) if values.ndim == 1 else int(np.asarray(neurons)[at[1]])
        raise ActivationsError(f"{f.filename}: layer{layer}/{state} of token {token}, neuron {neuron} is "
                               f"{values[tuple(at)]:g}, which no LSTM state is (the file is damaged; dump it again)")
    return values


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


def read_expectancy(f: h5py.File, start: int = 0, stop: int | None = None, log: bool = False) -> np.ndarray:
    """The expectancy p(w_t | w_<t) of tokens [``start``, ``stop``) (``log``: its natural log) as float64. A value no
    such probability has (NaN except at token 0, which has no context; p outside [0, 1]; log p above 0) is an
    :class:`ActivationsError` naming the file, the token and the value: a figure or page would draw it as a colour."""
    key = "log_expectancy" if log else "expectancy"
    values = f[key][start:stop].astype(np.float64)
    tokens = np.arange(start, start + len(values))
    slack = 1e-6  # float32's rounding of a probability of 1
    outside = values > slack if log else (values < 0) | (values > 1 + slack)
    bad = (np.isnan(values) & (tokens != 0)) | outside  # +inf is outside too
    if bad.any():
        i = int(np.argmax(bad))
        raise ActivationsError(f"{f.filename}: {key} of token {int(tokens[i])} is {values[i]:g}, which no "
                               f"{'log-probability' if log else 'probability'} is (the file is damaged; dump it "
                               "again)")
    return values
