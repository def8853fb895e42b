"""Ablation files read back, without torch: the per-word log-probabilities (HDF5) and the table (CSV).

Written by :mod:`lstmscope.ablation` (HDF5) and :mod:`lstmscope.ablation_table` (CSV); read by the table
and figure jobs, which need not import torch.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .checked_files import open_hdf5, read_table

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


def check_divergence_model(table: pd.DataFrame, model: str, path: str | os.PathLike) -> None:
    """The divergence table ``table`` (read from ``path``) must be model ``model``'s."""
    models = sorted(set(table["model"].astype(str)))
    if models != [str(model)]:
        named = f"model {models[0]}" if len(models) == 1 else f"models {', '.join(models)}" if models else "no model"
        raise AblationError(f"{path} is the divergence table of {named}, not of model {model}")


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


def read_ablation(path: str | os.PathLike) -> AblationFile:
    """Read an ablation file; errors name the file and the missing key."""
    with open_hdf5(path, FORMAT, "ablation", AblationError) as f:
        try:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            words = [w.decode() if isinstance(w, bytes) else str(w) for w in f["tokens/words"][:]]
            intact = f["log_prob/intact"][:].astype(np.float64)
            ablated = f["log_prob/ablated"][:].astype(np.float64)
            layers = f["ablation/layer"][:]
            units = f["ablation/neurons"][:]
            groups = [g.decode() if isinstance(g, bytes) else str(g) for g in f["ablation/group"][:]]
        except KeyError as exc:
            raise AblationError(f"{path}: missing {exc}") from None
    absent = [k for k in ("model", "text", "dropout", "state", "n_tokens") if k not in attrs]
    if absent:
        raise AblationError(f"{path}: missing attribute(s) {', '.join(absent)}")
    abls = [Ablation(int(layer), tuple(int(j) for j in row if j >= 0), group)
            for layer, row, group in zip(layers, units, groups)]
    return AblationFile(attrs, words, intact, ablated, abls)


def read_ablation_table(path: str | os.PathLike) -> pd.DataFrame:
    """An ablation CSV; errors name the file and the missing columns."""
    return read_table(path, COLUMNS, "ablation table", AblationError, dtype={"kl_rank": "Int64", "neurons": str},
                      keep_default_na=False, na_values=[""])
