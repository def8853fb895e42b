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
outside it; it does not depend on how rare the context is. Everything a probe learns (the standardisation, the
weights, the neuron and its direction, the word shares) is learnt on the training part; the top-KL neurons are
ranked on the whole text, but by their value distributions, which never see a context.

``layer_auc``           logistic regression (L2, ``regularisation`` = scikit-learn's C, each class weighted inversely
                        to its frequency) on all the layer's neurons, standardised on the training part
``neuron_auc``          the one neuron whose AUC on the training part is furthest from 0.5 (in either direction: a
                        neuron lower in the context counts as much as one higher), scored on the test part in that
                        direction (``neuron_train_auc``: its training AUC, below 0.5 for a neuron lower in the context)
``kl_neuron_auc``       the same, chosen among the ``kl_neurons`` top-KL neurons only (the neurons the thesis's ranking
                        would show first; ``kl_neuron_train_auc``)
``random_neurons_auc``  its control: the same choice among ``kl_neurons`` live neurons drawn at random, the expected
                        test AUC over every such draw (exact, no simulation: :func:`expected_best_of_random`). Does
                        the ranking find the neurons that carry a context better than chance?
``word_auc``            no state at all: each word's share of tokens in the context on the training part (a word not
                        seen there: the part's share; one pseudo-token of that share added to every word)
``window_auc``          no state either: the same logistic regression on the last ``window`` words (the word and the
                        ``window - 1`` before it, each position its own one-hot block). Before ``<eos>`` is mostly the
                        full stop, a heading a line with ``=`` in it: a state that scores no higher than a few words
                        has not shown that it remembers more than those words

A context with fewer than :data:`MIN_TOKENS` tokens inside (or outside) it in either part has no scores (the row
says how many there were). ``test_spans`` counts the runs of the context in the test part: the scores rest on that
many separate occurrences, not on the number of tokens, and a long run weighs as much as its tokens.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from .activations_file import open_activations, read_neurons, read_words
from .atomic import write_table
from .divergence import check_divergence_fits, ranked, read_divergence
from .tracking import CONTEXTS, context_masks, start_up

log = logging.getLogger(__name__)

#: Fewest tokens inside, and outside, a context in each part for it to be scored.
MIN_TOKENS = 10
#: lbfgs's iterations before a regression counts as not converged (the row says so), and its tolerance (tighter than
#: scikit-learn's 1e-4, which left the fourth decimal of an AUC to where the solver stopped).
MAX_ITER = 1000
TOL = 1e-6

PROBE_COLUMNS = ["model", "text", "dropout", "layer", "state", "context", "train_tokens", "test_tokens",
                 "train_inside", "test_inside", "test_spans", "layer_auc", "converged", "neuron", "neuron_kl_rank",
                 "neuron_train_auc", "neuron_auc", "kl_neuron", "kl_neuron_rank", "kl_neuron_train_auc",
                 "kl_neuron_auc", "random_neurons_auc", "word_auc", "window_auc"]
PROBE_NUMBERS = ["dropout", "layer", "train_tokens", "test_tokens", "train_inside", "test_inside", "test_spans"]
AUC_COLUMNS = ["layer_auc", "neuron_auc", "kl_neuron_auc", "random_neurons_auc", "word_auc", "window_auc"]


def split_point(n_tokens: int, test_share: float) -> tuple[int, int]:
    """(first token scored, first token of the test part) of a text of ``n_tokens``: the start-up left out, the last
    ``test_share`` of the rest (rounded to whole tokens) tests."""
    if not 0 < test_share < 1:
        raise ValueError(f"probe.test_share={test_share}: must lie between 0 and 1 (both excluded)")
    skip = start_up(n_tokens)
    return skip, n_tokens - int(round(test_share * (n_tokens - skip)))


def spans(mask: np.ndarray) -> int:
    """The number of runs of True in ``mask``: where one starts (a True after a False, or first). Counted here, not
    with :func:`.cluster_measures.runs`, so that an edit of the cluster measures reruns no probe."""
    mask = np.asarray(mask, dtype=bool)
    return int(np.count_nonzero(mask[1:] & ~mask[:-1])) + int(mask[:1].sum())


def aucs_of_ranks(ranks: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The AUC of every column of a (T, N) matrix as a score of ``inside`` (T,), from its ranks along each column
    (``scipy.stats.rankdata(values, axis=0)``, ties given their average rank): the Mann-Whitney U of the column's
    values inside against outside over the pairs, a tie counting one half."""
    inside = np.asarray(inside, dtype=bool)
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    return (ranks[inside].sum(axis=0) - n_in * (n_in + 1) / 2) / (n_in * n_out)


def best_of(train_aucs: np.ndarray, candidates: np.ndarray) -> int:
    """Among ``candidates`` (indices), the one whose training AUC lies furthest from 0.5 (the first of equals)."""
    return int(candidates[int(np.argmax(np.abs(train_aucs[candidates] - 0.5)))])


def expected_best_of_random(train_aucs: np.ndarray, test_aucs: np.ndarray, live: np.ndarray, k: int) -> float:
    """The test AUC of :func:`best_of` ``k`` neurons drawn at random from ``live`` (all draws equally likely),
    expected over every draw: with the live neurons in the order :func:`best_of` prefers them, the i-th (from 1) is
    the draw's choice in C(L - i, k - 1) of the C(L, k) draws. ``test_aucs``: each neuron's in its chosen direction.
    NaN without live neurons."""
    L = len(live)
    if L == 0:
        return float("nan")
    k = min(k, L)
    # preferred first: furthest from 0.5, then the lower index (argmax's first of equals among sorted candidates)
    order = np.asarray(live)[np.lexsort((np.asarray(live), -np.abs(train_aucs[live] - 0.5)))]
    total = math.comb(L, k)
    weights = np.array([math.comb(L - i, k - 1) / total for i in range(1, L + 1)])
    return float(np.dot(weights, test_aucs[order]))


def word_scores(train_words: Sequence[str], train_inside: np.ndarray, words: Sequence[str]) -> np.ndarray:
    """Each of ``words`` scored by its word's share of tokens inside the context in the training part, with one
    pseudo-token of the part's overall share (a word not seen in training: that share)."""
    prior = float(np.mean(train_inside))
    frame = pd.DataFrame({"word": list(train_words), "inside": np.asarray(train_inside, dtype=float)})
    stats = frame.groupby("word", sort=False)["inside"].agg(["sum", "size"])
    share = (stats["sum"] + prior) / (stats["size"] + 1)
    return pd.Series(list(words), dtype=object).map(share).fillna(prior).to_numpy(dtype=float)


def window_features(words: Sequence[str], window: int):
    """A sparse (T, window x W) matrix of the last ``window`` words at every token: block b (from 0) holds the one-hot
    of the word b tokens back (empty before the text's start); W = the distinct words of ``words``."""
    from scipy.sparse import csr_matrix

    ids = pd.factorize(pd.Series(list(words), dtype=object))[0]
    T, W = len(ids), int(ids.max()) + 1 if len(ids) else 0
    backs = range(min(window, T))  # a text shorter than the window: its blocks past the start stay empty
    rows = np.concatenate([np.arange(back, T) for back in backs] or [np.zeros(0, int)])
    cols = np.concatenate([back * W + ids[:T - back] for back in backs] or [np.zeros(0, int)])
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(T, window * W))


def fit_and_score(train, train_inside: np.ndarray, test, test_inside: np.ndarray, regularisation: float,
                  standardise: bool) -> tuple[float, bool]:
    """The test AUC of a logistic regression (L2, C = ``regularisation``, classes weighted inversely to their
    frequency; ``standardise``: on the training part's standardised features), and whether it converged."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=MAX_ITER, tol=TOL)
    probe = make_pipeline(StandardScaler(), regression) if standardise else regression
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(train, train_inside)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(roc_auc_score(test_inside, probe.decision_function(test))), converged


def scored(inside: np.ndarray, skip: int, cut: int) -> bool:
    """Whether a context has :data:`MIN_TOKENS` tokens inside and outside it in both parts."""
    parts = (inside[skip:cut], inside[cut:])
    return min(min(int(p.sum()), int((~p).sum())) for p in parts) >= MIN_TOKENS


def text_baselines(masks: dict[str, np.ndarray], words: Sequence[str], test_share: float, regularisation: float,
                   window: int) -> dict[str, dict]:
    """The probes without a state, the same for every layer and state: per context its counts and, where it is
    scored, ``word_auc``, ``window_auc`` and whether the window's regression converged (``window_converged``)."""
    skip, cut = split_point(len(words), test_share)
    features = window_features(words, window).tocsr()
    out = {}
    for context in CONTEXTS:
        y_train, y_test = masks[context][skip:cut], masks[context][cut:]
        row = {"train_tokens": cut - skip, "test_tokens": len(words) - cut, "train_inside": int(y_train.sum()),
               "test_inside": int(y_test.sum()), "test_spans": spans(y_test), "word_auc": np.nan,
               "window_auc": np.nan, "window_converged": True}
        if scored(masks[context], skip, cut):
            from sklearn.metrics import roc_auc_score

            row["word_auc"] = float(roc_auc_score(y_test, word_scores(words[skip:cut], y_train, words[cut:])))
            row["window_auc"], row["window_converged"] = fit_and_score(features[skip:cut], y_train, features[cut:],
                                                                       y_test, regularisation, standardise=False)
        out[context] = row
    return out


def probe_view(values: np.ndarray, masks: dict[str, np.ndarray], test_share: float, regularisation: float,
               kl_candidates: np.ndarray, live: np.ndarray) -> list[dict]:
    """The probes of one layer and state (``values``: (T, N), the whole text) for every context: one dict per context
    with ``context``, ``layer_auc``, ``converged``, the best neuron's and the best top-KL neuron's columns and
    ``random_neurons_auc`` (``kl_candidates``: the top-KL neurons; ``live``: every live neuron), NaN where the
    context is not scored."""
    from scipy.stats import rankdata

    skip, cut = split_point(len(values), test_share)
    train, test = values[skip:cut], values[cut:]
    train_ranks, test_ranks = rankdata(train, axis=0), rankdata(test, axis=0)  # the same for every context
    everyone = np.arange(values.shape[1])
    rows = []
    for context in CONTEXTS:
        row = {"context": context, "layer_auc": np.nan, "converged": "", "random_neurons_auc": np.nan,
               **{f"{p}{c}": np.nan for p in ("neuron", "kl_neuron") for c in ("", "_train_auc", "_auc")}}
        rows.append(row)
        if not scored(masks[context], skip, cut):
            continue
        y_train, y_test = masks[context][skip:cut], masks[context][cut:]
        row["layer_auc"], row["converged"] = fit_and_score(train, y_train, test, y_test, regularisation,
                                                           standardise=True)
        train_aucs = aucs_of_ranks(train_ranks, y_train)
        # each neuron read in the direction its training AUC gives (AUC of -x = 1 - AUC of x)
        test_aucs = aucs_of_ranks(test_ranks, y_test)
        test_aucs = np.where(train_aucs >= 0.5, test_aucs, 1.0 - test_aucs)
        for prefix, candidates in (("neuron", everyone), ("kl_neuron", kl_candidates)):
            if len(candidates):
                neuron = best_of(train_aucs, candidates)
                row.update({prefix: neuron, f"{prefix}_train_auc": float(train_aucs[neuron]),
                            f"{prefix}_auc": float(test_aucs[neuron])})
        row["random_neurons_auc"] = expected_best_of_random(train_aucs, test_aucs, live, len(kl_candidates))
    return rows


def check_settings(test_share: float, regularisation: float, kl_neurons: int, window: int) -> None:
    """The probe settings, each refused by its key (a ValueError) before any file is read."""
    split_point(1, test_share)
    if not regularisation > 0:
        raise ValueError(f"probe.regularisation={regularisation}: must be > 0")
    for key, value in (("kl_neurons", kl_neurons), ("window", window)):
        if value < 1:
            raise ValueError(f"probe.{key}={value}: must be >= 1")


def context_probes(activations_path: str | os.PathLike, divergence_path: str | os.PathLike,
                   csv_path: str | os.PathLike, test_share: float, regularisation: float, kl_neurons: int,
                   window: int) -> pd.DataFrame:
    """The probes of every layer, state and context of one model and text (see the module's docstring), written to
    ``csv_path``."""
    check_settings(test_share, regularisation, kl_neurons, window)
    table = read_divergence(divergence_path)
    first = table.iloc[0]
    rows = []
    with open_activations(activations_path) as f:
        check_divergence_fits(table, str(f.attrs["model"]), str(f.attrs["text"]), int(f.attrs["hidden_size"]),
                              activations_path)
        words = read_words(f)
        masks = context_masks(read_words(f, split=True))  # as the tracking table's contexts
        baselines = text_baselines(masks, words, test_share, regularisation, window)
        for context, b in baselines.items():
            if np.isnan(b["word_auc"]):
                log.warning("%s: %d tokens inside the context in training, %d in the test part (each part needs %d "
                            "inside and outside): no scores", context, b["train_inside"], b["test_inside"],
                            MIN_TOKENS)
        hidden = int(f.attrs["hidden_size"])
        for (layer, state), view in table.groupby(["layer", "state"], sort=True):
            kl_ranks = view.set_index("neuron")["rank"]
            kl_candidates = np.sort(ranked(table, int(layer), str(state), kl_neurons)["neuron"].to_numpy(dtype=int))
            live = np.sort(view.loc[view["rank"].notna(), "neuron"].to_numpy(dtype=int))
            values = read_neurons(f, int(layer), str(state), np.arange(hidden))
            for row in probe_view(values, masks, test_share, regularisation, kl_candidates, live):
                b = baselines[row["context"]]
                # a dead neuron has no rank (an empty cell)
                row["neuron_kl_rank"] = np.nan if pd.isna(row["neuron"]) else kl_ranks[int(row["neuron"])]
                row["kl_neuron_rank"] = np.nan if pd.isna(row["kl_neuron"]) else kl_ranks[int(row["kl_neuron"])]
                if row["converged"] != "":
                    row["converged"] = bool(row["converged"] and b["window_converged"])
                    if not row["converged"]:
                        log.warning("layer %d %s, %s: a regression did not converge in %d iterations (its AUC is "
                                    "written, converged false)", int(layer), state, row["context"], MAX_ITER)
                rows.append({"model": first["model"], "text": first["text"], "dropout": first["dropout"],
                             "layer": int(layer), "state": str(state), **row,
                             **{k: v for k, v in b.items() if k != "window_converged"}})
    out = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    for col in ("neuron", "neuron_kl_rank", "kl_neuron", "kl_neuron_rank"):  # whole numbers, empty where none
        out[col] = out[col].astype("Int64")
    write_table(out, csv_path, "%.6g")
    for r in out.itertuples():
        log.info("layer %d %s %-10s AUC layer %.3f, best neuron %s %.3f, best of the top-KL %s %.3f (random %.3f), "
                 "word %.3f, last %d words %.3f", r.layer, r.state, r.context, r.layer_auc,
                 "" if pd.isna(r.neuron) else int(r.neuron), r.neuron_auc,
                 "" if pd.isna(r.kl_neuron) else int(r.kl_neuron), r.kl_neuron_auc, r.random_neurons_auc,
                 r.word_auc, window, r.window_auc)
    return out


def read_probes(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The probe tables of :func:`context_probes` (one per model, all of one text), one under the other; a ValueError
    names the file and the column and line of a missing or wrong value, a repeated view, or another text."""
    from .checked_files import read_tables, refuse_mixed, refuse_unnamed

    frames = []
    for path in paths:
        table = read_tables([path], PROBE_COLUMNS, PROBE_NUMBERS + AUC_COLUMNS, "context probe table", ValueError,
                            whole=("layer", "train_tokens", "test_tokens", "train_inside", "test_inside",
                                   "test_spans"), may_be_empty=AUC_COLUMNS)
        refuse_unnamed(table, ["text"], path, ValueError)
        refuse_mixed(table, ["text"], path, ValueError, "a context probe table is one text's")
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
        if frames and str(table["text"].iloc[0]) != str(frames[0]["text"].iloc[0]):
            raise ValueError(f"{path} is a context probe table of text {table['text'].iloc[0]}, {paths[0]} of text "
                             f"{frames[0]['text'].iloc[0]}: give the tables of one text")
        frames.append(table)
    if not frames:
        raise ValueError("no context probe tables given")
    return pd.concat(frames, ignore_index=True)
