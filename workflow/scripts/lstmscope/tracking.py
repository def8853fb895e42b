"""What a neuron tracks: its activation in textual contexts, measured instead of eyeballed.

Contexts are defined on the text's own words (``tokens/split_words``: a number the
vocabulary lacks is still a number), for the state *after* reading token t (what the
model knows at that point). Quotation marks and parentheses are
tracked within a line (WikiText paragraph); ``<eos>`` resets both.

``quote``       inside quotation marks: an odd number of ``"`` tokens in the line up to and including t
``paren``       inside parentheses: a ``(`` of the line up to and including t that no ``)`` up to t closes (a
                ``)`` with no ``(`` open is passed over: in ``) ( a`` the ``(`` and ``a`` are inside)
``pre_number``  the next token is a number (digits, optionally with ``.``/``,`` groups, e.g. 1998, 3.5), and
                t is not inside one: WikiText writes 1,000 as ``1 @,@ 000`` and 3.5 as ``3 @.@ 5``, so the
                states after ``@,@`` and ``@.@`` are left out
``pre_eos``     the next token is ``<eos>`` and t is the last token of a paragraph (the model is about to end
                it): neither an ``<eos>`` (a blank line follows a line) nor part of a heading line
``heading``     t lies in a section heading line (``= = Film = = <eos>``, its ``<eos>`` included), where
                many neurons of WikiText models are at their most extreme

For each, the mean activation inside and outside, their difference and Cohen's
d (difference over the pooled standard deviation) are reported, and the same
comparison within words, ``_word_d``: a context's tokens are mostly a few words
(``pre_eos``: the full stop), so d also measures what the neuron does on those
words anywhere; ``_word_d`` compares each token in the context with the same word
outside it (see :func:`within_word_d`). Then the words on which the neuron is
highest and lowest (distinct words, by their single highest / lowest occurrence,
as "maximally activating examples": a word can be in both lists).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .activations_file import ActivationsError, open_activations, read_neurons, read_words
from .atomic import write_table
from .checked_files import number_columns, read_table
from .divergence import check_divergence_fits, ranked, ranking_measure, read_divergence
from .order import models_in_order
from .wikitext import EOS, heading_tokens

log = logging.getLogger(__name__)

NUMBER = re.compile(r"^[0-9]+(?:[.,][0-9]+)*$")
NUMBER_JOINERS = frozenset({"@,@", "@.@"})  # WikiText's separators inside a number: 1 @,@ 000, 3 @.@ 5
CONTEXTS = ("quote", "paren", "pre_number", "pre_eos", "heading")


def context_masks(words: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean masks (T,) of every context; see the module docstring for their definitions."""
    T = len(words)
    quote = np.zeros(T, dtype=bool)
    paren = np.zeros(T, dtype=bool)
    q_open, depth = False, 0
    for t, w in enumerate(words):
        if w == EOS:
            q_open, depth = False, 0
        elif w == '"':
            q_open = not q_open
        elif w == "(":
            depth += 1
        elif w == ")":
            depth = max(0, depth - 1)
        quote[t] = q_open
        paren[t] = depth > 0
    is_number = np.fromiter((bool(NUMBER.match(w)) for w in words), dtype=bool, count=T)
    is_eos = np.fromiter((w == EOS for w in words), dtype=bool, count=T)
    in_number = np.fromiter((w in NUMBER_JOINERS for w in words), dtype=bool, count=T)
    heading = heading_tokens(words)
    pre_number = np.zeros(T, dtype=bool)
    pre_number[:-1] = is_number[1:] & ~in_number[:-1]
    pre_eos = np.zeros(T, dtype=bool)
    pre_eos[:-1] = is_eos[1:] & ~is_eos[:-1] & ~heading[:-1]
    return {"quote": quote, "paren": paren, "pre_number": pre_number, "pre_eos": pre_eos, "heading": heading}


def cohens_d(inside: np.ndarray, outside: np.ndarray) -> float:
    """Cohen's d with the pooled standard deviation, in float64; NaN when a group has fewer than two values or
    neither varies. "Neither varies" is read off the values (each side one value), not off the pooled variance: the
    variance of a constant group is rounding noise wherever its mean does not come out exact (1e-16 for float32
    values summed in float32, or float64 values such as 0.7615942), which gave a neuron constant on both sides a d
    of millions."""
    n1, n2 = len(inside), len(outside)
    if n1 < 2 or n2 < 2 or (np.ptp(inside) == 0 and np.ptp(outside) == 0):
        return float("nan")
    v1, v2 = np.var(inside, ddof=1, dtype=np.float64), np.var(outside, ddof=1, dtype=np.float64)
    pooled = np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    return float((np.mean(inside, dtype=np.float64) - np.mean(outside, dtype=np.float64)) / pooled)


@dataclass(frozen=True)
class WordGroups:
    """How one context splits the text's words, for :func:`within_word_d`: the same for every neuron, so made once
    per text (:func:`word_groups`), not once per neuron."""

    mask: np.ndarray   # (T,) the context
    ids: np.ndarray    # (T,) each token's word id
    n_in: np.ndarray   # (W,) tokens of each word inside the context
    n_out: np.ndarray  # (W,) and outside it
    both: np.ndarray   # (W,) words on both sides
    keep: np.ndarray   # (T,) tokens of those words
    k_in: int          # such tokens inside the context
    dof: int           # kept tokens minus the 2 means of each word on both sides


def word_groups(mask: np.ndarray, word_ids: np.ndarray) -> WordGroups:
    """How the context ``mask`` splits the words ``word_ids`` (one id per token)."""
    ids = np.asarray(word_ids)
    W = int(ids.max()) + 1 if len(ids) else 0
    n_in, n_out = np.bincount(ids[mask], minlength=W), np.bincount(ids[~mask], minlength=W)
    both = (n_in > 0) & (n_out > 0)
    keep = both[ids]
    return WordGroups(mask, ids, n_in, n_out, both, keep, int((keep & mask).sum()),
                      int(keep.sum()) - 2 * int(both.sum()))


def context_word_groups(masks: dict[str, np.ndarray], word_ids: np.ndarray) -> dict[str, WordGroups]:
    """:func:`word_groups` of every context."""
    return {name: word_groups(masks[name], word_ids) for name in CONTEXTS}


def within_word_d(values: np.ndarray, groups: WordGroups) -> tuple[int, float]:
    """The context's effect with the word held fixed: over the tokens in the context whose word also occurs
    outside it, the mean of (value - mean of that word outside the context), over the pooled within-word
    standard deviation (deviations from each word's mean inside and outside, ddof = the number of those
    means). Returns (tokens in the context compared, d); d is NaN with fewer than two of them, no word on
    both sides, or no spread."""
    g, mask = groups, groups.mask
    if g.k_in < 2 or g.dof < 1:
        return g.k_in, float("nan")
    W = len(g.n_in)
    sum_in = np.bincount(g.ids[mask], weights=values[mask], minlength=W)
    sum_out = np.bincount(g.ids[~mask], weights=values[~mask], minlength=W)
    mean_in = np.divide(sum_in, g.n_in, out=np.zeros(W), where=g.n_in > 0)
    mean_out = np.divide(sum_out, g.n_out, out=np.zeros(W), where=g.n_out > 0)
    diff = float(np.sum((g.n_in * (mean_in - mean_out))[g.both]) / g.k_in)
    own_mean = np.where(mask, mean_in[g.ids], mean_out[g.ids])
    sd = float(np.sqrt(np.sum(((values - own_mean)[g.keep]) ** 2) / g.dof))
    return g.k_in, (diff / sd if sd > 0 else float("nan"))


def context_effects(values: np.ndarray, masks: dict[str, np.ndarray],
                    groups: dict[str, WordGroups] | None = None) -> dict[str, float]:
    """Mean inside/outside, difference and Cohen's d of ``values`` for every context; with ``groups``
    (:func:`context_word_groups`) also the within-word comparison (``_word_n``, ``_word_d``)."""
    out: dict[str, float] = {}
    for name in CONTEXTS:
        m = masks[name]
        inside, outside = values[m], values[~m]
        out[f"{name}_n"] = int(m.sum())
        out[f"{name}_mean_in"] = float(inside.mean()) if len(inside) else float("nan")
        out[f"{name}_mean_out"] = float(outside.mean()) if len(outside) else float("nan")
        out[f"{name}_diff"] = out[f"{name}_mean_in"] - out[f"{name}_mean_out"]
        out[f"{name}_d"] = cohens_d(inside, outside)
        if groups is not None:
            out[f"{name}_word_n"], out[f"{name}_word_d"] = within_word_d(values, groups[name])
    return out


#: The first tokens of a text are read from the zero state, so their states are the model's start-up, not its
#: answer to the words: run on the default models with 500 tokens of text before it, the test text's states differ
#: by up to 8.9-10.7 (some neuron's c) at its first token, 0.03-0.15 at its 20th and at most 0.011 from its 50th on. The
#: extreme words leave them out (where the text is longer than twice as many); the contexts' means and d keep them.
START_UP = 50


def start_up(n_tokens: int) -> int:
    """How many of a text's first tokens the extreme words leave out: :data:`START_UP`, or none in a short text."""
    return START_UP if n_tokens > 2 * START_UP else 0


def extreme_words(values: np.ndarray, words: Sequence[str], k: int, lowest: bool = False,
                  skip: int = 0) -> list[tuple[str, float]]:
    """The ``k`` distinct words with the highest (or lowest) single activations, with that activation; the first
    ``skip`` tokens are left out."""
    values, words = values[skip:], words[skip:]
    order = np.argsort(values if lowest else -values, kind="stable")
    seen: dict[str, float] = {}
    for t in order:
        w = words[t]
        if w not in seen:
            seen[w] = float(values[t])
            if len(seen) == k:
                break
    return list(seen.items())


def _fmt(pairs: list[tuple[str, float]]) -> str:
    # each item ends in " (±x.xx)", so a word that is "(", ";" or "," still reads as one (split on that end,
    # not on "; ")
    return "; ".join(f"{w} ({round(v, 2) + 0.0:+.2f})" for w, v in pairs)  # + 0.0: no "-0.00" for a value near 0


# rank follows rank_by (divergence.rank_by: kl_sum, kl_pq or kl_qp, as in the divergence table); all three
# measures are kept, so that every table has the same columns and the ranked one, row[row.rank_by], is there
RANK_COLUMNS = ["rank", "rank_by", "kl_sum", "kl_pq", "kl_qp"]
TRACKING_COLUMNS = (["model", "text", "dropout", "layer", "state", "neuron", *RANK_COLUMNS, "mean"]
                    + [f"{c}_{m}" for c in CONTEXTS for m in ("n", "mean_in", "mean_out", "diff", "d", "word_n",
                                                               "word_d")]
                    + ["strongest_context", "strongest_d", "strongest_word_d", "highest_words", "lowest_words"])


def neuron_tracking(activations_path: str | os.PathLike, divergence_path: str | os.PathLike,
                    csv_path: str | os.PathLike, top_k: int | None, top_words: int) -> pd.DataFrame:
    """Context effects and extreme words of the ``top_k`` ranked neurons of every layer and state (None: every
    live neuron), each with its ``rank``, the measure the ranks follow (``rank_by``, divergence.rank_by) and
    the divergence table's ``kl_sum``, ``kl_pq`` and ``kl_qp``."""
    if (top_k is not None and top_k < 1) or top_words < 1:
        raise ActivationsError(f"divergence.track={top_k} and divergence.top_words={top_words}: must be >= 1")
    table = read_divergence(divergence_path)
    measure = ranking_measure(table)  # what the ranks follow, written beside them
    rows = []
    with open_activations(activations_path) as f:
        check_divergence_fits(table, str(f.attrs["model"]), str(f.attrs["text"]), int(f.attrs["hidden_size"]),
                              activations_path)
        words = read_words(f)
        skip = start_up(len(words))  # the extreme words leave out the text's start from the zero state
        # the contexts are the text's (a number the vocabulary lacks is still a number), the values the model's
        masks = context_masks(read_words(f, split=True))
        # "the same word": as the model read it (its words, one number each; the ids would serve alike, but a damaged
        # id is a negative bincount or a count of billions); how each context splits the words is the same for every
        # neuron
        groups = context_word_groups(masks, pd.factorize(np.asarray(words, dtype=object))[0])
        for (layer, state), _ in table.groupby(["layer", "state"], sort=True):
            top = ranked(table, int(layer), str(state), len(table) if top_k is None else top_k)
            if top.empty:
                log.warning("%s: layer%d/%s has no live (ranked) neuron: none described", divergence_path,
                            int(layer), state)
                continue
            cols = np.sort(top["neuron"].to_numpy())
            values = read_neurons(f, int(layer), str(state), cols)  # only the top neurons: (T, k), one read
            for r in top.itertuples():
                v = values[:, int(np.searchsorted(cols, r.neuron))]
                row = {"model": r.model, "text": r.text, "dropout": r.dropout, "layer": int(layer),
                       "state": str(state), "neuron": int(r.neuron), "rank": int(r.rank), "rank_by": measure,
                       "kl_sum": r.kl_sum, "kl_pq": r.kl_pq, "kl_qp": r.kl_qp, "mean": float(v.mean())}
                row.update(context_effects(v, masks, groups))
                # the context with the largest |d|; none where no context has an effect size (a constant neuron)
                finite = [c for c in CONTEXTS if np.isfinite(row[f"{c}_d"])]
                best = max(finite, key=lambda c: abs(row[f"{c}_d"])) if finite else ""
                row["strongest_context"] = best
                row["strongest_d"] = row[f"{best}_d"] if finite else float("nan")
                row["strongest_word_d"] = row[f"{best}_word_d"] if finite else float("nan")
                row["highest_words"] = _fmt(extreme_words(v, words, top_words, skip=skip))
                row["lowest_words"] = _fmt(extreme_words(v, words, top_words, lowest=True, skip=skip))
                rows.append(row)
    out = pd.DataFrame(rows, columns=TRACKING_COLUMNS)  # the header even without rows
    write_table(out, csv_path, "%.6g")
    log.info("%d top neurons described; contexts in the text: %s", len(out),
             ", ".join(f"{c} {int(masks[c].sum())}" for c in CONTEXTS))
    return out


SUMMARY_COLUMNS = ["model", "text", "dropout", "layer", "state", "neuron", *RANK_COLUMNS, "strongest_context",
                   "strongest_d", "strongest_word_d", *[f"{c}_d" for c in CONTEXTS], "highest_words", "lowest_words"]


def tracking_summary(paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike, per_group: int = 1
                     ) -> pd.DataFrame:
    """The short table of the report: the ``per_group`` top neurons of every model, text, layer and state."""
    frames = []
    for p in paths:  # each part checked as it is read: joined, a part without a column would only add NaN
        # the header alone is a table: a layer with no live neuron has no row to describe
        frame = read_table(p, SUMMARY_COLUMNS, "tracking table", ActivationsError, allow_empty=True)
        # what orders and names a row: an empty cell would sort last or drop the neuron (a d is empty without context)
        number_columns(frame, ["dropout", "layer", "neuron", "rank", "kl_sum", "kl_pq", "kl_qp"], p, ActivationsError,
                       whole=("layer", "neuron", "rank"))
        frames.append(frame)
    if not frames:
        raise ActivationsError("no tracking tables given")
    table = pd.concat(frames, ignore_index=True)
    summary = (table.sort_values(["dropout", "model", "text", "layer", "state", "rank"], key=models_in_order,
                                 kind="stable")
               .groupby(["model", "text", "layer", "state"], sort=False).head(per_group)[SUMMARY_COLUMNS])
    write_table(summary, csv_path, "%.3g")  # 3 significant digits, but the dropout whole
    return summary
