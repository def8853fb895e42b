"""Ablation files read back, without torch: the per-word log-probabilities (HDF5) and the table (CSV).

Written by :mod:`lstmscope.ablation` (HDF5) and :mod:`lstmscope.ablation_table` (CSV); read by the table
and figure jobs, which need not import torch.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import pandas as pd

from .checked_files import number_columns, open_hdf5, read_table, refuse_mixed, refuse_rows

FORMAT = "lstmscope-ablation-1"
COLUMNS = ["model", "text", "dropout", "layer", "group", "neurons", "kl_rank", "kl_sum", "dead", "perplexity",
           "intact_perplexity", "perplexity_change_pct", "mean_effect", "helped_fraction", "words_helped",
           "words_hindered"]


class AblationError(ValueError):
    """Bad input of an ablation; the message names the file, key or value."""


@dataclass(frozen=True)
class Ablation:
    """One ablation: ``neurons`` (0-based) of ``layer`` (1-based) removed together."""

    layer: int
    neurons: tuple[int, ...]
    group: str              # top, top all, random or random all
    kl_rank: int | None = None   # rank of a single top neuron; None otherwise

    @property
    def label(self) -> str:
        units = " ".join(str(j) for j in self.neurons)
        return f"layer {self.layer} {self.group}: {units}"


def check_divergence_model(table: pd.DataFrame, model: str, path: str | os.PathLike, text: str | None = None) -> None:
    """The divergence table ``table`` (read from ``path``) must be model ``model``'s, and of text ``text`` where
    given (the neurons removed are the ranking of the text they are removed on)."""
    models = sorted(set(table["model"].astype(str)))
    if models != [str(model)]:
        named = f"model {models[0]}" if len(models) == 1 else f"models {', '.join(models)}" if models else "no model"
        raise AblationError(f"{path} is the divergence table of {named}, not of model {model}")
    texts = sorted(set(table["text"].astype(str)))
    if text is not None and texts != [str(text)]:
        raise AblationError(f"{path} is the divergence table of text {', '.join(texts) or 'none'}, not of text {text} "
                            f"(model {model}): the neurons would be chosen by another text's ranking")


def perplexity(log_probs: np.ndarray) -> float:
    """exp of the mean negative log-probability of the finite entries (the first word has none)."""
    finite = log_probs[np.isfinite(log_probs)]
    return float(math.exp(-finite.mean())) if len(finite) else math.nan


# --------------------------------------------------------------------------- reading back


@dataclass
class AblationFile:
    """An ablation HDF5 file read back."""

    attrs: dict[str, Any]
    words: list[str]
    intact: np.ndarray            # (T,) float64
    ablated: np.ndarray           # (A, T) float64
    ablations: list[Ablation]

    def effect(self, a: int) -> np.ndarray:
        """log p intact - log p ablated of every word under ablation ``a`` (nats; NaN at t = 0)."""
        return self.intact - self.ablated[a]

    @property
    def method(self) -> str:
        """What the removed units' h was held at (``ablation.method``); files from before it held them at 0."""
        return str(self.attrs.get("method", "zero"))


# the datasets read back: key -> (dimensions, kind of data); held_at and tokens/ids, not read, are checked if there
DATASETS = {"tokens/words": (1, "strings"), "log_prob/intact": (1, "floats"), "log_prob/ablated": (2, "floats"),
            "ablation/layer": (1, "integers"), "ablation/neurons": (2, "integers"), "ablation/group": (1, "strings")}
OPTIONAL = {"tokens/ids": (1, "integers"), "ablation/held_at": (2, "floats")}


def _check_datasets(f: h5py.File, path: str | os.PathLike) -> None:
    """Every dataset there, of its kind, and lined up: T tokens (``log_prob/intact``) in the words, the ids and each
    row of ``log_prob/ablated``; A ablations (its rows) in every ``ablation/*``. Shapes and dtypes only."""
    kinds = {"strings": lambda dt: h5py.check_string_dtype(dt) is not None,
             "floats": lambda dt: np.issubdtype(dt, np.floating), "integers": lambda dt: np.issubdtype(dt, np.integer)}
    for key, (ndim, kind) in {**DATASETS, **OPTIONAL}.items():
        if key not in f or not isinstance(f[key], h5py.Dataset):
            if key in OPTIONAL:
                continue
            raise AblationError(f"{path}: dataset {key!r} is missing (file incomplete or corrupt)")
        ds = f[key]
        if ds.ndim != ndim:
            raise AblationError(f"{path}: dataset {key!r} has shape {ds.shape}, expected {ndim} dimension(s)")
        if not kinds[kind](ds.dtype):
            raise AblationError(f"{path}: dataset {key!r} holds {ds.dtype}, expected {kind}")
    T, A = f["log_prob/intact"].shape[0], f["log_prob/ablated"].shape[0]
    n_tokens = f.attrs.get("n_tokens")
    if isinstance(n_tokens, (int, np.integer)) and T != n_tokens:
        raise AblationError(f"{path}: log_prob/intact has {T} entries, attribute n_tokens says {n_tokens}")
    if T < 1 or A < 1:
        raise AblationError(f"{path}: log_prob/ablated has shape {f['log_prob/ablated'].shape}; expected at least "
                            "1 ablation (row) and 1 token (column)")
    per_token = "log_prob/intact has {} tokens"
    per_ablation = "log_prob/ablated has {} rows (one per ablation)"
    lined_up = [("log_prob/ablated", 1, T, "columns", per_token), ("tokens/words", 0, T, "entries", per_token),
                ("tokens/ids", 0, T, "entries", per_token),
                *((key, 0, A, "entries", per_ablation)
                  for key in ("ablation/group", "ablation/layer", "ablation/neurons", "ablation/held_at"))]
    for key, axis, want, what, says in lined_up:
        if key in f and f[key].shape[axis] != want:
            raise AblationError(f"{path}: {key} has {f[key].shape[axis]} {what}, but {says.format(want)}")
    if "ablation/held_at" in f and f["ablation/held_at"].shape != f["ablation/neurons"].shape:
        raise AblationError(f"{path}: ablation/held_at has shape {f['ablation/held_at'].shape}, ablation/neurons "
                            f"{f['ablation/neurons'].shape}; they must be equal")


def _check_units(path: str | os.PathLike, attrs: dict[str, Any], layers: np.ndarray, units: np.ndarray) -> None:
    """Layers within 1..``layers`` and neurons within 0..``hidden_size``-1 (where the file says them; -1 pads a
    row), at least one neuron per ablation."""
    n_layers, hidden = attrs.get("layers"), attrs.get("hidden_size")
    layer_range = f"1..{int(n_layers)}" if n_layers is not None else "from 1"
    neuron_range = f"0..{int(hidden) - 1}" if hidden is not None else "from 0"
    for a, (layer, row) in enumerate(zip(layers, units)):
        if layer < 1 or (n_layers is not None and layer > int(n_layers)):
            raise AblationError(f"{path}: ablation/layer[{a}] is {layer}; the file's layers are {layer_range}")
        bad = [int(j) for j in row if j < -1 or (hidden is not None and j >= int(hidden))]
        if bad:
            raise AblationError(f"{path}: ablation/neurons[{a}] holds neuron {bad[0]}; the file's neurons are "
                                f"{neuron_range} (-1 pads a row)")
        if not (row >= 0).any():
            raise AblationError(f"{path}: ablation/neurons[{a}] names no neuron")


def _check_log_probabilities(path: str | os.PathLike, intact: np.ndarray, ablated: np.ndarray) -> None:
    """log p of every token read but the first (no context, NaN): finite and at most 0; else the figures and tables
    would be drawn from NaN, or (-inf: p = 0, which a softmax of finite logits never gives) leave the word out of
    the perplexity and its change without a word."""
    for key, values in (("log_prob/intact", intact[None, :]), ("log_prob/ablated", ablated)):
        rest = values[:, 1:]
        bad = ~np.isfinite(rest) | (rest > 1e-6)
        if bad.any():
            row, col = np.unravel_index(int(np.argmax(bad)), bad.shape)
            where = f"token {col + 1}" if key == "log_prob/intact" else f"ablation {row}, token {col + 1}"
            raise AblationError(f"{path}: {key} of {where} is {rest[row, col]:g}, which no log-probability is (the "
                                "file is damaged; run the ablation again)")


def read_ablation(path: str | os.PathLike) -> AblationFile:
    """Read an ablation file; errors name the file and the missing or inconsistent key."""
    with open_hdf5(path, FORMAT, "ablation", AblationError) as f:
        try:
            _check_datasets(f, path)
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            words = [w.decode() if isinstance(w, bytes) else str(w) for w in f["tokens/words"][:]]
            intact = f["log_prob/intact"][:].astype(np.float64)
            ablated = f["log_prob/ablated"][:].astype(np.float64)
            layers = f["ablation/layer"][:]
            units = f["ablation/neurons"][:]
            groups = [g.decode() if isinstance(g, bytes) else str(g) for g in f["ablation/group"][:]]
        except AblationError:
            raise
        except (KeyError, OSError, ValueError, TypeError) as exc:  # h5py's errors on a damaged file
            raise AblationError(f"{path}: corrupt ablation file ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())})") from None
    absent = [k for k in ("model", "text", "dropout", "state", "n_tokens") if k not in attrs]
    if absent:
        raise AblationError(f"{path}: missing attribute(s) {', '.join(absent)}")
    if attrs["n_tokens"] != len(intact):
        raise AblationError(f"{path}: log_prob/intact has {len(intact)} entries, attribute n_tokens says "
                            f"{attrs['n_tokens']!r}")
    _check_units(path, attrs, layers, units)
    _check_log_probabilities(path, intact, ablated)
    abls = [Ablation(int(layer), tuple(int(j) for j in row if j >= 0), group)
            for layer, row, group in zip(layers, units, groups)]
    return AblationFile(attrs, words, intact, ablated, abls)


GROUPS = ("top", "top all", "random", "random all")
NUMBER_COLUMNS = ["dropout", "kl_sum", "perplexity", "intact_perplexity", "perplexity_change_pct", "mean_effect",
                  "helped_fraction"]


def read_ablation_table(path: str | os.PathLike) -> pd.DataFrame:
    """An ablation CSV (one model's, of one text); errors name the file and the column, or the row by its line in
    the file (the header is line 1) and the value."""
    table = read_table(path, COLUMNS, "ablation table", AblationError, dtype={"kl_rank": "Int64", "neurons": str},
                       keep_default_na=False, na_values=[""])

    def refuse(bad: pd.Series, col: str, must: str) -> None:
        refuse_rows(table, bad, col, must, path, AblationError)

    layer = pd.to_numeric(table["layer"], errors="coerce")
    refuse(layer.isna() | (layer != layer.round()) | (layer < 1), "layer", "whole numbers from 1")
    table["layer"] = layer.astype(np.int64)
    refuse(~table["group"].isin(GROUPS), "group", " or ".join(GROUPS))
    refuse(~table["neurons"].astype(str).str.fullmatch(r"\d+( \d+)*"), "neurons", "neuron numbers from 0, "
           "separated by spaces")
    # empty only where a number does not apply (kl_sum of a group)
    number_columns(table, NUMBER_COLUMNS, path, AblationError, may_be_empty=("kl_sum",))
    refuse_mixed(table, ["model", "text"], path, AblationError, "an ablation table is one model's, of one text")
    return table


def check_table_matches(table: pd.DataFrame, stored: AblationFile, table_path: str | os.PathLike,
                        h5_path: str | os.PathLike) -> None:
    """The ablation table must be the one made from ``stored``: its model and text, one row per ablation in the
    file's order, each of the same layer, group and neurons (the figures take a row's numbers and the file's
    effects of the same position)."""
    model, text = str(stored.attrs["model"]), str(stored.attrs["text"])
    got = (str(table["model"].iloc[0]), str(table["text"].iloc[0]))
    if got != (model, text):
        raise AblationError(f"{table_path} is the ablation table of model {got[0]} / text {got[1]}, but {h5_path} is "
                            f"of model {model} / text {text}")
    if len(stored.ablations) != len(table):
        raise AblationError(f"{h5_path} holds {len(stored.ablations)} ablations but {table_path} has {len(table)} rows")
    for i, (ab, (_, row)) in enumerate(zip(stored.ablations, table.iterrows())):
        if (ab.layer, ab.group, " ".join(map(str, ab.neurons))) != (int(row["layer"]), row["group"], row["neurons"]):
            raise AblationError(f"{table_path}: line {i + 2} is layer {row['layer']} {row['group']} neurons "
                                f"{row['neurons']}, but ablation {i + 1} of {h5_path} is layer {ab.layer} {ab.group} "
                                f"neurons {' '.join(map(str, ab.neurons))}: not the table of this file")
