"""Context probes: does a layer know a context, and does one neuron carry it?

The tracking table (:mod:`.tracking`) measures what the top-KL neurons do in five contexts (inside quotation marks
or parentheses, before a number, before ``<eos>``, in a heading; defined there). A probe asks the question from the
other side: given a layer's whole state after token t, how well can the context at t be read from it, and how much
of that is in the single best neuron?

For every layer, state and context, the text (less its first :data:`.tracking.START_UP` tokens, read from the zero
state) is cut once: the first ``1 - test_share`` of it trains, the rest tests. The cut is one boundary, not a random
split: neighbouring tokens share a context (a quotation is a run of tokens), so tokens drawn at random for the test
would have their neighbours, nearly the same states, in the training part. Every score is the area under the ROC
curve (AUC) on the test part: 0.5 = no better than chance, 1 = every token in the context scored above every token
outside it; it does not depend on how rare the context is.

``layer_auc``      logistic regression (L2, ``regularisation`` = scikit-learn's C, classes weighted by their
                   frequency) on all the layer's neurons, standardised on the training part
``neuron_auc``     the one neuron whose AUC on the training part is furthest from 0.5 (in either direction: a neuron
                   lower in the context counts as much as one higher), scored on the test part in that direction
``kl_neuron_auc``  the same, chosen among the ``kl_neurons`` top-KL neurons only (the neurons the thesis's ranking
                   would show first): does the ranking find the neurons that carry a context?
``word_auc``       no state at all: each word's share of tokens in the context on the training part (a word not seen
                   there: the part's share; one pseudo-token of that share added to every word), scored on the test
                   part. Before ``<eos>`` is mostly the full stop, a heading mostly ``=``; a state that scores no
                   higher than its word has not shown that it remembers anything

A context with fewer than :data:`MIN_TOKENS` tokens inside (or outside) it in either part has no scores (the row
says how many there were). ``test_spans`` counts the runs of the context in the test part: the scores rest on that
many separate occurrences, not on the number of tokens.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from .activations_file import ActivationsError, open_activations, read_neurons, read_words
from .atomic import write_table
from .divergence import check_divergence_fits, ranked, read_divergence
from .tracking import CONTEXTS, context_masks, start_up

log = logging.getLogger(__name__)

#: Fewest tokens inside, and outside, a context in each part for it to be scored.
MIN_TOKENS = 10
#: lbfgs's iterations before a probe counts as not converged (the row says so).
MAX_ITER = 1000

PROBE_COLUMNS = ["model", "text", "dropout", "layer", "state", "context", "train_tokens", "test_tokens",
                 "train_inside", "test_inside", "test_spans", "layer_auc", "converged", "neuron", "neuron_kl_rank",
                 "neuron_train_auc", "neuron_auc", "kl_neuron", "kl_neuron_rank", "kl_neuron_auc", "word_auc"]
PROBE_NUMBERS = ["dropout", "layer", "train_tokens", "test_tokens", "train_inside", "test_inside", "test_spans"]
AUC_COLUMNS = ["layer_auc", "neuron_auc", "kl_neuron_auc", "word_auc"]


def split_point(n_tokens: int, test_share: float) -> tuple[int, int]:
    """(first token scored, first token of the test part) of a text of ``n_tokens``: the start-up left out, the last
    ``test_share`` of the rest (rounded to whole tokens) tests."""
    if not 0 < test_share < 1:
        raise ValueError(f"probe.test_share={test_share}: must lie between 0 and 1 (both excluded)")
    skip = start_up(n_tokens)
    return skip, n_tokens - int(round(test_share * (n_tokens - skip)))


def spans(mask: np.ndarray) -> int:
    """The number of runs of True in ``mask``."""
    m = np.asarray(mask, dtype=bool)
    return int(m[0]) + int(np.count_nonzero(m[1:] & ~m[:-1])) if len(m) else 0


def column_aucs(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The AUC of every column of ``values`` (T, N) as a score of ``inside`` (T,): the Mann-Whitney U of the column's
    values inside against outside over the pairs, ties counting one half (average ranks)."""
    from scipy.stats import rankdata

    inside = np.asarray(inside, dtype=bool)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    ranks = rankdata(values, axis=0)
    u = ranks[inside].sum(axis=0) - n_in * (n_in + 1) / 2
    return u / (n_in * n_out)


def best_neuron(values: np.ndarray, inside: np.ndarray, candidates: np.ndarray) -> tuple[int, float]:
    """Among the columns ``candidates`` (sorted indices), the neuron whose AUC is furthest from 0.5 (the first of
    equals), and that AUC."""
    aucs = column_aucs(values[:, candidates], inside)
    i = int(np.argmax(np.abs(aucs - 0.5)))
    return int(candidates[i]), float(aucs[i])


def word_scores(train_words: Sequence[str], train_inside: np.ndarray, words: Sequence[str]) -> np.ndarray:
    """Each of ``words`` scored by its word's share of tokens inside the context in the training part, with one
    pseudo-token of the part's overall share (a word not seen in training: that share)."""
    prior = float(np.mean(train_inside))
    frame = pd.DataFrame({"word": list(train_words), "inside": np.asarray(train_inside, dtype=float)})
    stats = frame.groupby("word", sort=False)["inside"].agg(["sum", "size"])
    share = (stats["sum"] + prior) / (stats["size"] + 1)
    return pd.Series(list(words), dtype=object).map(share).fillna(prior).to_numpy(dtype=float)


def layer_probe(train: np.ndarray, train_inside: np.ndarray, test: np.ndarray, test_inside: np.ndarray,
                regularisation: float) -> tuple[float, bool]:
    """The test AUC of a logistic regression on the training part's standardised states, and whether it converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, class_weight="balanced",
                                                               max_iter=MAX_ITER))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(train, train_inside)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(roc_auc_score(test_inside, probe.decision_function(test))), converged


def probe_view(values: np.ndarray, masks: dict[str, np.ndarray], words: Sequence[str], test_share: float,
               regularisation: float, kl_candidates: np.ndarray) -> list[dict]:
    """The probes of one layer and state (``values``: (T, N), the whole text) for every context: one dict per context
    with the columns of :data:`PROBE_COLUMNS` from ``train_tokens`` on (the neurons' KL ranks left out)."""
    from sklearn.metrics import roc_auc_score

    skip, cut = split_point(len(values), test_share)
    train, test = values[skip:cut], values[cut:]
    train_words, test_words = list(words[skip:cut]), list(words[cut:])
    everyone = np.arange(values.shape[1])
    rows = []
    for context in CONTEXTS:
        y_train, y_test = masks[context][skip:cut], masks[context][cut:]
        row = {"context": context, "train_tokens": len(train), "test_tokens": len(test),
               "train_inside": int(y_train.sum()), "test_inside": int(y_test.sum()), "test_spans": spans(y_test)}
        rows.append(row)
        if min(y_train.sum(), (~y_train).sum(), y_test.sum(), (~y_test).sum()) < MIN_TOKENS:
            row.update({c: np.nan for c in AUC_COLUMNS}, converged="", neuron=np.nan, neuron_train_auc=np.nan,
                       kl_neuron=np.nan)
            continue
        row["layer_auc"], row["converged"] = layer_probe(train, y_train, test, y_test, regularisation)
        for prefix, candidates in (("neuron", everyone), ("kl_neuron", kl_candidates)):
            if len(candidates) == 0:
                row.update({prefix: np.nan, f"{prefix}_auc": np.nan})
                continue
            neuron, train_auc = best_neuron(train, y_train, candidates)
            sign = 1.0 if train_auc >= 0.5 else -1.0
            row[prefix] = neuron
            row[f"{prefix}_auc"] = float(roc_auc_score(y_test, sign * test[:, neuron]))
            if prefix == "neuron":
                row["neuron_train_auc"] = train_auc
        row["word_auc"] = float(roc_auc_score(y_test, word_scores(train_words, y_train, test_words)))
    return rows


def context_probes(activations_path: str | os.PathLike, divergence_path: str | os.PathLike,
                   csv_path: str | os.PathLike, test_share: float, regularisation: float, kl_neurons: int
                   ) -> pd.DataFrame:
    """The probes of every layer, state and context of one model and text (see the module's docstring), written to
    ``csv_path``."""
    if not regularisation > 0 or kl_neurons < 1:
        raise ActivationsError(f"probe.regularisation={regularisation} and probe.kl_neurons={kl_neurons}: "
                               "must be > 0 and >= 1")
    split_point(1, test_share)  # the share checked before any file is read
    table = read_divergence(divergence_path)
    first = table.iloc[0]
    rows = []
    with open_activations(activations_path) as f:
        check_divergence_fits(table, str(f.attrs["model"]), str(f.attrs["text"]), int(f.attrs["hidden_size"]),
                              activations_path)
        words = read_words(f)
        masks = context_masks(read_words(f, split=True))  # as the tracking table's contexts
        hidden = int(f.attrs["hidden_size"])
        for (layer, state), view in table.groupby(["layer", "state"], sort=True):
            kl_ranks = view.set_index("neuron")["rank"]
            kl_candidates = np.sort(ranked(table, int(layer), str(state), kl_neurons)["neuron"].to_numpy(dtype=int))
            values = read_neurons(f, int(layer), str(state), np.arange(hidden))
            for row in probe_view(values, masks, words, test_share, regularisation, kl_candidates):
                # a dead neuron has no rank (an empty cell)
                row["neuron_kl_rank"] = np.nan if pd.isna(row["neuron"]) else kl_ranks[int(row["neuron"])]
                row["kl_neuron_rank"] = np.nan if pd.isna(row["kl_neuron"]) else kl_ranks[int(row["kl_neuron"])]
                rows.append({"model": first["model"], "text": first["text"], "dropout": first["dropout"],
                             "layer": int(layer), "state": str(state), **row})
                if pd.isna(row["layer_auc"]):
                    log.warning("layer %d %s, %s: %d tokens inside the context in training, %d in the test part "
                                "(each part needs %d inside and outside): no scores", int(layer), state,
                                row["context"], row["train_inside"], row["test_inside"], MIN_TOKENS)
                elif not row["converged"]:
                    log.warning("layer %d %s, %s: the probe did not converge in %d iterations (its AUC is written, "
                                "converged false)", int(layer), state, row["context"], MAX_ITER)
    out = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    for col in ("neuron", "neuron_kl_rank", "kl_neuron", "kl_neuron_rank"):  # whole numbers, empty where none
        out[col] = out[col].astype("Int64")
    write_table(out, csv_path, "%.6g")
    for r in out.itertuples():
        log.info("layer %d %s %-10s AUC layer %.3f, best neuron %s %.3f, best of the top-KL %s %.3f, word %.3f",
                 r.layer, r.state, r.context, r.layer_auc, "" if pd.isna(r.neuron) else int(r.neuron), r.neuron_auc,
                 "" if pd.isna(r.kl_neuron) else int(r.kl_neuron), r.kl_neuron_auc, r.word_auc)
    return out


def read_probes(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The probe tables of :func:`context_probes` (one per model, of one text), one under the other; a ValueError
    names the file and the column and line of a missing or wrong value, or a repeated view."""
    from .checked_files import read_tables

    frames = []
    for path in paths:
        table = read_tables([path], PROBE_COLUMNS, PROBE_NUMBERS + AUC_COLUMNS, "context probe table", ValueError,
                            whole=("layer", "train_tokens", "test_tokens", "train_inside", "test_inside",
                                   "test_spans"), may_be_empty=AUC_COLUMNS)
        twice = table.duplicated(["layer", "state", "context"]).to_numpy()
        if twice.any():
            r = table.iloc[int(np.argmax(twice))]
            raise ValueError(f"{path}: line {int(np.argmax(twice)) + 2} repeats layer {r['layer']} {r['state']} "
                             f"{r['context']}")
        aucs = table[AUC_COLUMNS].to_numpy(dtype=float)
        bad = (aucs < 0) | (aucs > 1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{path}: line {i + 2}: {AUC_COLUMNS[j]} is {aucs[i, j]:g}, which no AUC is "
                             "(0 to 1)")
        frames.append(table)
    if not frames:
        raise ValueError("no context probe tables given")
    texts = sorted({str(t) for f in frames for t in f["text"].unique()})
    if len(texts) != 1:
        raise ValueError(f"context probe tables mix texts {texts}; give the tables of one text")
    return pd.concat(frames, ignore_index=True)
