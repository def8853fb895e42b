"""The ablation table: one row per ablation of a model on a text, made from its ablation file.

Per ablation: the perplexity with and without the neuron(s), its change with a 95 % interval
over the text (:func:`change_interval`), the mean effect on a word (log p intact - log p without,
in nats), the share of words the neuron(s) helped, and the words helped and hindered most. The
ablation job (:mod:`lstmscope.ablation`) keeps every word's log-probability in its HDF5 file; this
step only summarises them, so the listing settings (``ablation.min_count``, ``ablation.top_words``)
rerun this step, not the text's readings. No torch here.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Sequence

import numpy as np
import pandas as pd

from .ablation_file import COLUMNS, AblationError, AblationFile, check_divergence_model, perplexity, read_ablation
from .atomic import write_table
from .divergence import read_divergence

log = logging.getLogger(__name__)

BLOCKS = 20  # contiguous stretches of the text in the interval of a perplexity change
INTERVAL = ["change_ci_low_pct", "change_ci_high_pct"]  # named by the figures and the command too
# the table's columns: the file's, with the interval after the change it belongs to
TABLE_COLUMNS = (COLUMNS[:COLUMNS.index("perplexity_change_pct") + 1] + INTERVAL
                 + COLUMNS[COLUMNS.index("perplexity_change_pct") + 1:])


def change_interval(effect: np.ndarray, blocks: int = BLOCKS, level: float = 0.95) -> tuple[float, float]:
    """A ``level`` interval of a perplexity change (%) over the text, by batch means: the words' effects (log p
    intact - log p without, NaN where none) in ``blocks`` contiguous stretches; the mean effect's interval is
    t(blocks - 1) standard errors of the stretches' means, and the change is exp(mean effect) - 1. Words
    depend on their neighbours, so stretches of text, not single words, are the units. NaN for fewer than
    two words per stretch."""
    from scipy.stats import t as student_t

    finite = effect[np.isfinite(effect)]
    if len(finite) < 2 * blocks:
        return math.nan, math.nan
    means = np.array([b.mean() for b in np.array_split(finite, blocks)])
    half = float(student_t.ppf(0.5 + level / 2, blocks - 1) * means.std(ddof=1) / math.sqrt(blocks))
    centre = float(finite.mean())
    return 100 * math.expm1(centre - half), 100 * math.expm1(centre + half)


def word_effects(words: Sequence[str], effect: np.ndarray, min_count: int, n: int) -> tuple[str, str]:
    """The ``n`` word types (seen at least ``min_count`` times) whose tokens together the neuron helped most and
    hindered most: ranked by the sum of their effects (nats; a word's share of log(perplexity ratio) x the words
    read), so a frequent word helped a little can outrank a rare one helped much. Written
    ``word (count× mean = sum)``, e.g. ``<eos> (141× +1.802 = +254.1)``; a sum below 1 in size to 3 significant
    digits (``in (3× +0.007 = +0.021)``, where one decimal wrote ``+0.0``)."""
    frame = pd.DataFrame({"word": list(words), "effect": effect})
    frame = frame[np.isfinite(frame["effect"])]
    stats = frame.groupby("word", sort=True)["effect"].agg(["sum", "mean", "size"])
    stats = stats[stats["size"] >= min_count]
    fmt = lambda rows: "; ".join(f"{w} ({c}\u00d7 {m:+.3f} = {t:+.1f})" if abs(t) >= 0.95 else  # noqa: E731
                                 f"{w} ({c}\u00d7 {m:+.3f} = {t:+.3g})"
                                 for w, c, m, t in zip(rows.index, rows["size"], rows["mean"], rows["sum"]))
    helped = stats[stats["sum"] > 0].sort_values("sum", ascending=False, kind="stable").head(n)
    hindered = stats[stats["sum"] < 0].sort_values("sum", kind="stable").head(n)
    return fmt(helped), fmt(hindered)


def effect_summary(words: Sequence[str], intact: np.ndarray, ablated: np.ndarray, min_count: int,
                   top_words: int) -> dict:
    """The table's numbers of one ablation: perplexity with and without, change, mean effect, words."""
    effect = intact - ablated
    finite = effect[np.isfinite(effect)]
    ppl, base = perplexity(ablated), perplexity(intact)
    helped, hindered = word_effects(words, effect, min_count, top_words)
    low, high = change_interval(effect)
    return {"perplexity": ppl, "intact_perplexity": base, "perplexity_change_pct": 100 * (ppl / base - 1),
            "change_ci_low_pct": low, "change_ci_high_pct": high,
            "mean_effect": float(finite.mean()) if len(finite) else math.nan,
            "helped_fraction": float((finite > 0).mean()) if len(finite) else math.nan,
            "words_helped": helped, "words_hindered": hindered}


def ablation_table(ablation: AblationFile, divergence: pd.DataFrame, min_count: int, top_words: int,
                   divergence_path: str | os.PathLike = "divergence table") -> pd.DataFrame:
    """The table of an ablation file; a single neuron's ``kl_rank``, ``kl_sum`` and ``dead`` come from the
    divergence table of the same model (the state the neurons were ranked by: the file's ``state``)."""
    if min_count < 1 or top_words < 1:
        raise AblationError(f"ablation.min_count={min_count}, ablation.top_words={top_words}: each must be at least 1")
    attrs = ablation.attrs
    model, state = str(attrs["model"]), str(attrs["state"])
    # (read_divergence has each neuron's row once)
    check_divergence_model(divergence, model, divergence_path, text=str(attrs["text"]))
    ranks = divergence[divergence["state"] == state].set_index(["layer", "neuron"])
    rows = []
    for a, ab in enumerate(ablation.ablations):
        single = len(ab.neurons) == 1
        info = ranks.loc[(ab.layer, ab.neurons[0])] if single and (ab.layer, ab.neurons[0]) in ranks.index else None
        rank = info["rank"] if info is not None and ab.group == "top" else None
        if ab.group == "top" and single and (rank is None or pd.isna(rank)):
            raise AblationError(f"{divergence_path}: layer {ab.layer} neuron {ab.neurons[0]} was removed as a top-KL "
                                f"neuron of {state} but is not ranked there: not the table the ablation chose from")
        rows.append({
            "model": model, "text": str(attrs["text"]), "dropout": float(attrs["dropout"]),
            "layer": ab.layer, "group": ab.group, "neurons": " ".join(str(j) for j in ab.neurons),
            "kl_rank": None if rank is None else int(rank),  # a top neuron's rank exists (checked above)
            "kl_sum": float(info["kl_sum"]) if info is not None else math.nan,
            "dead": bool(info["dead"]) if info is not None else None,
            **effect_summary(ablation.words, ablation.intact, ablation.ablated[a], min_count, top_words),
        })
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["kl_rank"] = table["kl_rank"].astype("Int64")
    return table


def write_ablation_table(h5_path: str | os.PathLike, divergence_path: str | os.PathLike,
                         csv_path: str | os.PathLike, min_count: int = 3, top_words: int = 6) -> pd.DataFrame:
    """Rule ablation_table: the CSV of one ablation file (written whole or not at all)."""
    table = ablation_table(read_ablation(h5_path), read_divergence(divergence_path), min_count, top_words,
                           divergence_path)
    write_table(table, csv_path, "%.6g")
    log.info("%d ablations of %s -> %s", len(table), h5_path, csv_path)
    return table
