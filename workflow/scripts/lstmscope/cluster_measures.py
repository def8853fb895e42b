"""What the clusters hold: sizes, most frequent words (thesis Table 5.1), word-class
purity, and contiguity along the text against a shuffled baseline.

Contiguity is the mean run length of cluster labels read in text order: 1 when
neighbouring tokens never share a cluster, the text length when one cluster holds
everything. Two baselines: the same labels in random order (same cluster sizes), so
``contiguity_ratio`` > 1 says that clusters are spans of the text rather than
scattered tokens (the thesis's observation for second-layer cell states); and each
word's labels shuffled among that word's own tokens (same text, same clusters per
word), so ``word_contiguity_ratio`` > 1 says that the spans are more than what the
words alone make of them: clusters largely follow the word read, and a text repeats
words in runs ("= = =", a blank line's "<eos> <eos>").

Contiguity by lag (:func:`contiguity_by_lag`) asks how far a cluster reaches: the share
of token pairs ``lag`` tokens apart that share a cluster, for every lag up to
``cluster.max_lag``, against the same two baselines, as agreement beyond chance (0 =
the shuffled labels', 1 = every pair in one cluster). Its lag 1 is the run length's
measure: mean run length = n / (1 + (n - 1) (1 - share at lag 1)).
"""
from __future__ import annotations

import html
import os
from collections import Counter
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_text
from .points import read_same_tokens, view_order
from .top_words import (DISTINCTIVE_MIN_COUNT, format_distinctive_words, format_top_words, parse_distinctive_words,
                        parse_top_words)
from .word_classes import word_class


def _thesis_order(item) -> tuple:
    """An item keyed (layer, state, linkage): layer by layer, h before c (:func:`points.view_order`), then by linkage."""
    layer, state, linkage = item[0]
    return (*view_order((layer, state)), linkage)


def runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal labels: (start index, length, label) of each run, in order."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), labels[:0]
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [labels.size]]))
    return starts, lengths, labels[starts]


def mean_run_length(labels: np.ndarray) -> float:
    """Number of tokens divided by the number of runs of equal labels along the text."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("no labels")
    return labels.size / (1 + np.count_nonzero(labels[1:] != labels[:-1]))


def shuffled_run_length(labels: np.ndarray, shuffles: int, seed: int) -> tuple[float, float]:
    """Mean and standard deviation of ``mean_run_length`` over ``shuffles`` random orders of the labels."""
    if shuffles < 1:
        raise ValueError(f"shuffles={shuffles}: must be at least 1")
    rng = np.random.default_rng(seed)
    values = np.array([mean_run_length(rng.permutation(labels)) for _ in range(int(shuffles))])
    return float(values.mean()), float(values.std(ddof=1) if shuffles > 1 else 0.0)


def word_shuffles(labels: np.ndarray, words: np.ndarray, shuffles: int, seed: int) -> Iterator[np.ndarray]:
    """``shuffles`` orders of ``labels`` in which each word's labels are shuffled among the tokens of that word
    (``words``, one per label), each a new array; the same seed gives the same orders (both word baselines, the
    run length's and the contiguity by lag's, take theirs from here). The arguments are checked at the call."""
    if shuffles < 1:
        raise ValueError(f"shuffles={shuffles}: must be at least 1")
    labels = np.asarray(labels)
    codes = pd.factorize(np.asarray(words))[0]
    if len(codes) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(codes)} words")

    def orders() -> Iterator[np.ndarray]:
        by_word = np.argsort(codes, kind="stable")  # positions grouped by word
        rng = np.random.default_rng(seed)
        for _ in range(int(shuffles)):
            shuffled = np.empty_like(labels)
            shuffled[by_word] = labels[np.lexsort((rng.random(len(codes)), codes))]  # grouped by word, random within
            yield shuffled

    return orders()


def word_shuffled_run_length(labels: np.ndarray, words: np.ndarray, shuffles: int,
                             seed: int) -> tuple[float, float]:
    """Mean and standard deviation of ``mean_run_length`` over ``shuffles`` orders of the labels in which each
    word's labels are shuffled among the tokens of that word (``words``, one per label): the text and the clusters
    of each word stay; only which of a word's tokens falls in which of its clusters is random."""
    values = np.array([mean_run_length(s) for s in word_shuffles(labels, words, shuffles, seed)])
    return float(values.mean()), float(values.std(ddof=1) if shuffles > 1 else 0.0)


def chance_same(labels: np.ndarray) -> float:
    """The probability that two tokens at any distance share a cluster when the labels are in uniformly random
    order (closed form: the sum over clusters of n_k (n_k - 1) / (n (n - 1)))."""
    n = len(labels)
    if n < 2:
        raise ValueError(f"{n} label{'s' * (n != 1)}: a pair needs two")
    counts = np.bincount(pd.factorize(np.asarray(labels))[0]).astype(np.float64)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def expected_runs(labels: np.ndarray) -> float:
    """Expected number of runs of a uniformly random order of ``labels`` (closed form)."""
    n = len(labels)
    if n < 2:
        return float(n)
    return 1.0 + (n - 1) * (1.0 - chance_same(labels))


def _same_count(labels: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """For each lag, how many token pairs that far apart along the text (t, t + lag) are in one cluster."""
    labels = np.asarray(labels)
    n = len(labels)
    return np.array([np.count_nonzero(labels[:n - lag] == labels[lag:]) for lag in lags], dtype=np.int64)


def same_share(labels: np.ndarray, lags: int | Sequence[int]) -> np.ndarray:
    """For each lag (1 ... tokens - 1), the share of the token pairs that far apart along the text (t, t + lag) in
    one cluster."""
    lags, n = np.atleast_1d(np.asarray(lags)), len(labels)
    outside = lags[(lags < 1) | (lags > n - 1)]
    if outside.size:
        raise ValueError(f"lag {outside[0]}: {n} labels have pairs 1 to {n - 1} apart")
    return _same_count(labels, lags) / (n - lags)


def _beyond_chance(share: np.ndarray, chance: float) -> np.ndarray:
    """(share - chance) / (1 - chance): 0 = chance, 1 = every pair in one cluster (NaN where chance is 1)."""
    if chance >= 1.0:
        return np.full(np.shape(share), np.nan)
    return (share - chance) / (1.0 - chance)


def contiguity_by_lag(labels: np.ndarray, words: np.ndarray, max_lag: int, shuffles: int = 100,
                      seed: int = 0) -> pd.DataFrame:
    """How far along the text a cluster reaches: for every lag 1 ... ``max_lag`` (at most the tokens less one), the
    share of token pairs that far apart in one cluster (``same``), against two baselines: uniformly shuffled labels
    (``chance``, exact: the same at every lag) and each word's labels shuffled among that word's tokens
    (``word_same``, mean and standard deviation over ``shuffles`` orders; the orders of
    :func:`word_shuffled_run_length` with the same seed), each also as agreement beyond chance,
    (share - chance) / (1 - chance): ``kappa`` and ``word_kappa``. ``word_z``: how many of the word baseline's
    standard deviations ``same`` lies above it (NaN where they do not vary). ``labels`` and ``words`` in text
    order, one per token."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_lag < 1:
        raise ValueError(f"max_lag={max_lag}: must be at least 1")
    if shuffles < 2:
        raise ValueError(f"shuffles={shuffles}: must be at least 2 (their spread is the scale of word_z)")
    chance = chance_same(labels)
    lags = np.arange(1, min(int(max_lag), n - 1) + 1)
    pairs = n - lags
    same = same_share(labels, lags)
    # counted as whole numbers, so shuffles that all count alike have a spread of exactly 0
    word = np.stack([_same_count(s, lags) for s in word_shuffles(labels, words, shuffles, seed)])
    word_same, word_sd = word.mean(axis=0) / pairs, word.std(axis=0, ddof=1) / pairs
    word_z = np.where(word_sd > 0, (same - word_same) / np.where(word_sd > 0, word_sd, 1.0), np.nan)
    return pd.DataFrame({"lag": lags, "pairs": pairs, "same": same, "chance": chance,
                         "kappa": _beyond_chance(same, chance), "word_same": word_same, "word_same_sd": word_sd,
                         "word_kappa": _beyond_chance(word_same, chance), "word_z": word_z})


def _cluster_words(members: list[str], text_counts: Counter, k: int
                   ) -> tuple[list[tuple[str, int]], list[tuple[str, int, int]]]:
    """A cluster's ``k`` most frequent words (word, count) and its ``k`` most distinctive ones (word, tokens in the
    cluster, tokens in the text): those with the largest share of their tokens in the cluster, among words with at
    least :data:`DISTINCTIVE_MIN_COUNT` tokens in it, ties by more tokens in the cluster. Ties left are broken by
    first appearance (a Counter keeps it, and the sorts are stable), so both lists are deterministic."""
    counts = Counter(members)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:k]
    eligible = sorted((w for w, c in counts.items() if c >= DISTINCTIVE_MIN_COUNT),
                      key=lambda w: (-counts[w] / text_counts[w], -counts[w]))
    return top, [(w, counts[w], text_counts[w]) for w in eligible[:k]]


def top_words_cells(text: str) -> str:
    """:func:`format_top_words`'s text as HTML, each word in a ``<code>`` box: ``, (197)`` reads as the comma
    197 times."""
    return " ".join(f"<code>{html.escape(w)}</code>&#8239;{c}" for w, c in parse_top_words(text))


def distinctive_cells(text: str) -> str:
    """:func:`format_distinctive_words`'s text as HTML, each word in a ``<code>`` box."""
    return " ".join(f"<code>{html.escape(w)}</code>&#8239;{c}/{n}" for w, c, n in parse_distinctive_words(text))


def cluster_table(table: pd.DataFrame, top_words: int = 10, span_words: int = 12) -> pd.DataFrame:
    """One row per cluster of a cluster table (``position, word, cluster``), largest first, ties by the first
    position of a member: the order of the clusters' canonical numbers, so the row is the cluster's number.

    Columns: cluster, size, share, top_words, distinctive_words, majority_class, purity, runs,
    longest_span_start, longest_span_length, longest_span_text. ``top_words`` are the most frequent words (the
    thesis's Table 5.1); ``distinctive_words`` those with the largest share of their tokens in the cluster
    (``word (in the cluster/among the tokens embedded)``, at least :data:`DISTINCTIVE_MIN_COUNT` in it): what
    sets the cluster apart where the most frequent are the text's commonest words everywhere.
    """
    table = table.sort_values("position", kind="stable").reset_index(drop=True)
    words = table["word"].astype(str).tolist()
    labels = table["cluster"].to_numpy()
    positions = table["position"].to_numpy()
    classes = np.array([word_class(w) for w in words])
    text_counts = Counter(words)
    starts, lengths, run_labels = runs(labels)
    rows = []
    n = len(table)
    for cluster in pd.unique(labels):
        members = np.flatnonzero(labels == cluster)
        top, distinctive = _cluster_words([words[i] for i in members], text_counts, top_words)
        cls, cls_count = Counter(classes[members]).most_common(1)[0]
        mine = run_labels == cluster
        best = np.flatnonzero(mine)[np.argmax(lengths[mine])]  # first longest run
        s, length = int(starts[best]), int(lengths[best])
        span = words[s:s + min(length, span_words)]
        rows.append({
            "cluster": int(cluster),
            "size": len(members),
            "share": len(members) / n,
            "top_words": format_top_words(top),
            "distinctive_words": format_distinctive_words(distinctive),
            "majority_class": cls,
            "purity": cls_count / len(members),
            "runs": int(mine.sum()),
            "longest_span_start": int(positions[s]),
            "longest_span_length": length,
            "longest_span_text": " ".join(span) + (" …" if length > span_words else ""),
        })
    # rows are in order of first appearance (the table is in text order): a stable sort by size keeps it for ties
    return pd.DataFrame(rows).sort_values("size", ascending=False, kind="stable").reset_index(drop=True)


def partition_measures(table: pd.DataFrame, shuffles: int = 100, seed: int = 0) -> dict[str, float]:
    """Contiguity (observed and shuffled) and word-class purity of one clustering."""
    table = table.sort_values("position", kind="stable")
    labels = table["cluster"].to_numpy()
    classes = [word_class(w) for w in table["word"].astype(str)]
    observed = mean_run_length(labels)
    shuffled, shuffled_sd = shuffled_run_length(labels, shuffles, seed)
    by_word, by_word_sd = word_shuffled_run_length(labels, table["word"].astype(str).to_numpy(), shuffles, seed)
    joint = pd.crosstab(labels, np.array(classes))
    sizes = np.bincount(pd.factorize(labels)[0])
    return {
        "points": len(labels),
        "clusters": len(sizes),
        "largest_share": float(sizes.max() / len(labels)),
        "mean_run_length": observed,
        "shuffled_run_length": shuffled,
        "shuffled_sd": shuffled_sd,
        "contiguity_ratio": observed / shuffled,
        # how many of the shuffles' standard deviations the observed run length lies from theirs
        "contiguity_z": (observed - shuffled) / shuffled_sd if shuffled_sd > 0 else float("nan"),
        "word_shuffled_run_length": by_word,
        "word_shuffled_sd": by_word_sd,
        "word_contiguity_ratio": observed / by_word,
        "word_contiguity_z": (observed - by_word) / by_word_sd if by_word_sd > 0 else float("nan"),
        "purity": float(joint.max(axis=1).sum() / len(labels)),
        "class_baseline": float(Counter(classes).most_common(1)[0][1] / len(labels)),
    }


def _keyed(frame: pd.DataFrame, key: Mapping[str, object]) -> pd.DataFrame:
    """``frame`` with ``key``'s items as its first columns, in ``key``'s order (the frame changed in place)."""
    for name, value in reversed(list(key.items())):
        frame.insert(0, name, value)
    return frame


def _read_partitions(cluster_files: Mapping[tuple[int, str, str], str | os.PathLike], space: str
                     ) -> dict[tuple[int, str, str], pd.DataFrame]:
    """The cluster tables of one model's text, in the thesis's order of views, each holding the same tokens and
    clusters of ``space`` (``cluster.space``), else a ValueError names the file."""
    from .cluster import MAP_CLUSTER, SPACES, read_clusters

    if space not in SPACES:
        raise ValueError(f"cluster space {space!r}: choose one of {', '.join(SPACES)}")
    ordered = dict(sorted(cluster_files.items(), key=_thesis_order))
    # one model's text: every view and linkage holds the same tokens, or the measures compare other texts
    tables = read_same_tokens(ordered, read_clusters)
    for key, table in tables.items():
        if (MAP_CLUSTER in table.columns) != (space == "pca"):
            raise ValueError(f"{ordered[key]}: {'holds' if space == 'map' else 'lacks'} the column {MAP_CLUSTER}, so "
                             f"it is not a table of clusters of the {'map' if space == 'map' else 'PCA space'}")
    return tables


def cluster_measures(cluster_files: Mapping[tuple[int, str, str], str | os.PathLike], model: str, text: str,
                     top_words: int = 10, shuffles: int = 100, seed: int = 0, space: str = "map"
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 5.1 (per cluster) and the measures (per layer x state x linkage) of one model's text.

    ``cluster_files`` maps (layer, state, linkage) to a cluster table; ``space`` names what was clustered
    (``cluster.space``). Tables of the PCA space also hold the map's clusters: ``map_ari`` is the adjusted Rand
    index between the two partitions (1 = the same, about 0 = no more alike than chance).
    """
    from .cluster import MAP_CLUSTER

    per_cluster, per_partition = [], []
    for (layer, state, linkage), table in _read_partitions(cluster_files, space).items():
        key = {"model": model, "text": text, "layer": int(layer), "state": state, "linkage": linkage}
        per_cluster.append(_keyed(cluster_table(table, top_words=top_words), key))
        row = {**key, "space": space, **partition_measures(table, shuffles=shuffles, seed=seed)}
        if space == "pca":  # scikit-learn imported only then: a job's start-up is most of a measures job
            from sklearn.metrics import adjusted_rand_score

            row["map_ari"] = float(adjusted_rand_score(table[MAP_CLUSTER], table["cluster"]))
        per_partition.append(row)
    return pd.concat(per_cluster, ignore_index=True), pd.DataFrame(per_partition)


BEYOND_Z = 1.96  # a value this many of its baseline's standard deviations away is beyond the baseline's spread


def lag_reach(lags: pd.DataFrame, z: float = BEYOND_Z) -> int:
    """How far one view's clusters reach beyond what the words alone make of them: the number of lags from 1 on, in
    a row, at which ``same`` lies at least ``z`` of the word baseline's standard deviations above it (``word_z``;
    one view's rows of :func:`contiguity_by_lag`). 0 where lag 1 does not."""
    lags = lags.sort_values("lag")
    if lags["lag"].tolist() != list(range(1, len(lags) + 1)):
        raise ValueError("the lags of one view, 1, 2, 3 ... without gaps, are needed")
    beyond = (lags["word_z"] >= z).to_numpy()  # NaN (no spread) is not beyond
    return int(len(beyond) if beyond.all() else np.argmin(beyond))


def reach_of(labels: np.ndarray, words: np.ndarray, shuffles: int = 100, seed: int = 0) -> int:
    """:func:`lag_reach` of one clustering (``labels`` and ``words`` in text order) at every lag it needs: lags 1 to
    16, then 1 to 32, 64 ... (each round from lag 1 again, at most twice the work) until one falls short or the
    tokens end, so the reach is not capped by a ``max_lag``; the same as :func:`lag_reach` of
    :func:`contiguity_by_lag` with the same shuffles and seed wherever that is below its ``max_lag`` (each lag's
    numbers do not depend on how many lags are computed)."""
    n, max_lag = len(labels), 16
    while True:
        lags = contiguity_by_lag(labels, words, max_lag, shuffles=shuffles, seed=seed)
        reach = lag_reach(lags)
        if reach < len(lags) or len(lags) == n - 1:
            return reach
        max_lag *= 2


def lag_measures(cluster_files: Mapping[tuple[int, str, str], str | os.PathLike], model: str, text: str,
                 max_lag: int, shuffles: int = 100, seed: int = 0, space: str = "map") -> pd.DataFrame:
    """:func:`contiguity_by_lag` of every layer x state x linkage of one model's text (``cluster_files`` as for
    :func:`cluster_measures`), one under the other with the view's key."""
    frames = []
    for (layer, state, linkage), table in _read_partitions(cluster_files, space).items():  # in text order
        lags = contiguity_by_lag(table["cluster"].to_numpy(), table["word"].astype(str).to_numpy(), max_lag,
                                 shuffles=shuffles, seed=seed)
        frames.append(_keyed(lags, {"model": model, "text": text, "layer": int(layer), "state": state,
                                    "linkage": linkage, "space": space}))
    return pd.concat(frames, ignore_index=True)


MEASURE_COLUMNS = ["model", "text", "layer", "state", "linkage", "space", "points", "clusters", "contiguity_ratio",
                   "contiguity_z", "word_contiguity_ratio", "word_contiguity_z"]  # what the contiguity figure reads
MEASURE_NUMBERS = ["layer", "points", "clusters", "contiguity_ratio", "word_contiguity_ratio", "contiguity_z",
                   "word_contiguity_z"]
MAY_BE_EMPTY = ("contiguity_z", "word_contiguity_z")  # one cluster: the baseline has no spread, so no z


def read_measures(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The measures tables of :func:`cluster_measures` (one per model and text), one under the other; each must hold
    the columns the contiguity figure reads, filled (a z is empty where one cluster leaves the baseline no spread),
    else a ValueError names the file, and the column and line."""
    from .checked_files import read_tables

    return read_tables(paths, MEASURE_COLUMNS, MEASURE_NUMBERS, "cluster measures table", ValueError,
                       whole=("layer", "points", "clusters"), may_be_empty=MAY_BE_EMPTY)


LAG_COLUMNS = ["model", "text", "layer", "state", "linkage", "space", "lag", "pairs", "same", "chance", "kappa",
               "word_same", "word_same_sd", "word_kappa", "word_z"]
LAG_NUMBERS = ["layer", "lag", "pairs", "same", "chance", "word_same", "word_same_sd", "kappa", "word_kappa", "word_z"]
LAG_MAY_BE_EMPTY = ("kappa", "word_kappa", "word_z")  # one cluster (no kappa); a word baseline that does not vary


def read_lag_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The tables of :func:`lag_measures` (one per model and text), one under the other, each checked as
    :func:`read_measures` checks its tables, and holding each lag of a view once (a ValueError names the file, and
    the column and line)."""
    from .checked_files import read_tables

    frames = []
    for path in paths:
        table = read_tables([path], LAG_COLUMNS, LAG_NUMBERS, "contiguity-by-lag table", ValueError,
                            whole=("layer", "lag", "pairs"), may_be_empty=LAG_MAY_BE_EMPTY)
        twice = table.duplicated(["layer", "state", "linkage", "lag"]).to_numpy()
        if twice.any():
            r = table.iloc[int(np.argmax(twice))]
            raise ValueError(f"{path}: line {int(np.argmax(twice)) + 2} repeats layer {r['layer']} {r['state']} "
                             f"{r['linkage']} lag {r['lag']}")
        frames.append(table)
    if not frames:
        raise ValueError("no contiguity-by-lag tables given")
    return pd.concat(frames, ignore_index=True)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; }
code { background: #eef; border: 1px solid #ccd; border-radius: 3px; padding: 0 3px; white-space: nowrap; }
p.note { color: #555; font-size: 0.85em; max-width: 60em; }
"""


def top_words_html(clusters: pd.DataFrame, measures: pd.DataFrame, title: str) -> str:
    """Table 5.1 rendered: one table per layer x state x linkage; every token escaped."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>",
             "<p class='note'>Clusters numbered by size (1 = largest). Most frequent words with their counts; "
             f"most distinctive words: those with the largest share of their tokens in the cluster (at least "
             f"{DISTINCTIVE_MIN_COUNT} in it), with their tokens in the cluster / among the tokens embedded; "
             "purity = share of the cluster's most common word class (eos, unk, punctuation, number, function, "
             "capitalized, content); longest span = the longest run of consecutive tokens of the cluster in the "
             "text. Contiguity = mean run length of cluster labels along the text, against the same for the labels "
             "shuffled, and for each word's labels shuffled among that word's tokens (what the words alone make of "
             "it).</p>"]
    if "space" in measures.columns and (measures["space"] == "pca").any():
        parts.append("<p class='note'>Clustered: the layer's states after the embedding's PCA (cluster.space: pca), "
                     "not the t-SNE map; the adjusted Rand index compares them with the same linkage's clusters of "
                     "the map (1 = the same partition, about 0 = no more alike than chance).</p>")
    for (layer, state, linkage), group in sorted(clusters.groupby(["layer", "state", "linkage"]), key=_thesis_order):
        m = measures[(measures.layer == layer) & (measures.state == state) & (measures.linkage == linkage)]
        head = f"Layer {layer}, {'cell state c' if state == 'c' else 'hidden state h'}, {linkage} linkage"
        parts.append(f"<h2>{esc(head)}</h2>")
        if len(m):
            r = m.iloc[0]
            n = int(r.clusters)
            parts.append(f"<p class='note'>{int(r.points)} tokens, {n} cluster{'s' * (n != 1)}; contiguity "
                         f"{r.mean_run_length:.2f} vs {r.shuffled_run_length:.2f} shuffled "
                         f"(ratio {r.contiguity_ratio:.2f}), {r.word_shuffled_run_length:.2f} with each word's "
                         f"labels shuffled among its tokens (ratio {r.word_contiguity_ratio:.2f}); purity "
                         f"{r.purity:.2f} vs {r.class_baseline:.2f} for one cluster"
                         + (f"; agreement with the {esc(linkage)} clusters of the t-SNE map: adjusted Rand index "
                            f"{r.map_ari:.2f}" if "map_ari" in m.columns else "") + ".</p>")
        parts.append("<table><tr><th>cluster</th><th>size</th><th>share</th><th>most frequent words</th>"
                     "<th>most distinctive words</th><th>class</th><th>purity</th><th>longest span</th></tr>")
        for r in group.itertuples():
            n = r.longest_span_length
            span = f"{n} token{'' if n == 1 else 's'} from {r.longest_span_start}: {r.longest_span_text}"
            parts.append(f"<tr><td class='num'>{r.cluster}</td><td class='num'>{r.size}</td>"
                         f"<td class='num'>{r.share:.3f}</td><td>{top_words_cells(r.top_words)}</td>"
                         f"<td>{distinctive_cells(r.distinctive_words)}</td>"
                         f"<td>{esc(r.majority_class)}</td><td class='num'>{r.purity:.2f}</td>"
                         f"<td>{esc(span)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(text: str, path: str | os.PathLike) -> None:
    write_text(path, text)
