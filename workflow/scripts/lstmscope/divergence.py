"""Divergence: how far each neuron's distribution is from the average neuron of its layer.

For one layer and state, every neuron's histogram (its bins plus an underflow and
an overflow slot, so that values outside the binned interval still count) is
smoothed by adding ``epsilon`` to every slot and normalised to a distribution
p_n. The reference q is the average of all N distributions (every neuron weighs
the same, dead ones included). For every neuron:

``kl_pq`` = KL(p_n ‖ q), ``kl_qp`` = KL(q ‖ p_n) (natural log, nats), ``kl_sum``
their sum (Jeffreys divergence), ``rank`` by ``rank_by`` (``kl_sum`` by default, or
either direction; 1 = farthest from the average) among the live neurons, ``rank_by``
(the column ranked by, so that the table says what its ranks mean), ``near_zero_fraction`` (values within
±dead_threshold), ``dead`` when that fraction exceeds ``dead_fraction``, and
``mean``, ``std``, ``mean_abs``, ``min``, ``max`` of its values.

Dead neurons are flagged, left out of the ranking (they would crowd its top, a
spike at zero being far from any average) and listed separately, as the thesis did.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import pandas as pd
from scipy.special import rel_entr

from .atomic import write_table
from .checked_files import number_columns, read_table, refuse_mixed, refuse_rows, refuse_unnamed
from .histogram import HistogramError, StoredHistogram, read_histograms

log = logging.getLogger(__name__)

COLUMNS = ["model", "text", "dropout", "layer", "state", "neuron", "kl_pq", "kl_qp", "kl_sum", "rank",
           "near_zero_fraction", "dead", "mean", "std", "mean_abs", "min", "max", "underflow", "overflow"]
# what a table can be ranked by (divergence.rank_by), as figures and pages name it
RANK_BY = {"kl_sum": "KL sum", "kl_pq": "KL(p‖q)", "kl_qp": "KL(q‖p)"}


def _source(table: pd.DataFrame) -> str:
    """The file a table was read from (:func:`read_divergence` notes it), for an error's first words."""
    return str(table.attrs.get("source", "divergence table"))


def ranking_measure(table: pd.DataFrame) -> str:
    """The column a divergence table's ranks follow (``kl_sum`` for a table without ``rank_by``)."""
    if "rank_by" not in table.columns or table.empty:
        return "kl_sum"
    measure = str(table["rank_by"].iloc[0])
    if measure not in RANK_BY:
        raise HistogramError(f"{_source(table)}: rank_by {measure!r} is not one of {', '.join(RANK_BY)}")
    return measure


def check_divergence_fits(table: pd.DataFrame, model: str, text: str, hidden: int, other: str | os.PathLike) -> None:
    """The divergence table must be of the model and text of ``other`` (an activations or histograms file) and of
    its width, ``hidden`` neurons per layer and state: a table of another run would draw or index the wrong neurons."""
    got = (str(table["model"].iloc[0]), str(table["text"].iloc[0]))  # read_divergence: one of each, rows
    if got != (str(model), str(text)):
        raise HistogramError(f"{_source(table)} is the divergence table of model {got[0]} / text {got[1]}, but "
                             f"{other} is of {model} / {text}")
    width = int(table["neuron"].max()) + 1
    if width != int(hidden):
        raise HistogramError(f"{_source(table)} has neurons 0-{width - 1} per layer and state, {other} "
                             f"{hidden} (0-{int(hidden) - 1}): the table of another model?")


def distributions(hist: StoredHistogram, epsilon: float) -> np.ndarray:
    """Smoothed distributions (N, bins + 2): underflow slot, the bins, overflow slot; rows sum to 1."""
    if not epsilon > 0:
        raise HistogramError(f"divergence.epsilon={epsilon}: must be positive")
    slots = np.concatenate([hist.underflow[:, None], hist.counts, hist.overflow[:, None]], axis=1).astype(np.float64)
    totals = slots.sum(axis=1)
    if (totals == 0).any():
        empty = np.flatnonzero(totals == 0)
        raise HistogramError(f"layer{hist.layer}/{hist.state}: empty histogram for neuron(s) {empty[:5].tolist()}")
    slots += epsilon
    return slots / slots.sum(axis=1, keepdims=True)


def kl_divergences(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(p_n ‖ q) and KL(q ‖ p_n) for every row p_n of ``p`` (nats)."""
    return rel_entr(p, q[None, :]).sum(axis=1), rel_entr(q[None, :], p).sum(axis=1)


def divergence_table(hist: StoredHistogram, epsilon: float, dead_fraction: float,
                     rank_by: str = "kl_sum") -> pd.DataFrame:
    """The divergence table of one layer and state (columns as ``COLUMNS`` without model/text/dropout), ranked
    by the column ``rank_by``."""
    if rank_by not in RANK_BY:
        raise HistogramError(f"divergence.rank_by={rank_by!r}: choose one of {', '.join(RANK_BY)}")
    p = distributions(hist, epsilon)
    q = p.mean(axis=0)
    kl_pq, kl_qp = kl_divergences(p, q)
    near = hist.near_zero / hist.n_values
    dead = near > dead_fraction
    table = pd.DataFrame({
        "layer": hist.layer, "state": hist.state, "neuron": np.arange(hist.neurons),
        "kl_pq": kl_pq, "kl_qp": kl_qp, "kl_sum": kl_pq + kl_qp,
        "near_zero_fraction": near, "dead": dead, "mean": hist.mean, "std": hist.std,
        "mean_abs": hist.mean_abs, "min": hist.minimum, "max": hist.maximum,
        "underflow": hist.underflow, "overflow": hist.overflow,
    })
    live = table.loc[~dead, rank_by]
    # rank 1 = the largest value; ties keep neuron order (stable), so ranks are reproducible
    order = live.sort_values(ascending=False, kind="stable").index
    table["rank"] = pd.array([pd.NA] * len(table), dtype="Int64")
    table.loc[order, "rank"] = np.arange(1, len(order) + 1)
    return table


def neuron_divergence(histograms_path: str | os.PathLike, csv_path: str | os.PathLike,
                      dead_csv_path: str | os.PathLike, epsilon: float, dead_threshold: float,
                      dead_fraction: float, rank_by: str = "kl_sum") -> pd.DataFrame:
    """Divergence of every neuron of every layer and state; writes the table and the dead-neuron list."""
    attrs, hists = read_histograms(histograms_path)
    log.info("settings: epsilon %g, dead_threshold %g, dead_fraction %g, rank_by %s", epsilon, dead_threshold,
             dead_fraction, rank_by)
    tables = []
    for hist in hists:
        if not math.isclose(hist.near_zero_threshold, dead_threshold, rel_tol=1e-9):  # a relative check: 1e-9 is no 5e-9
            raise HistogramError(f"{histograms_path}: layer{hist.layer}/{hist.state} counted values within "
                                 f"±{hist.near_zero_threshold}, but divergence.dead_threshold={dead_threshold}; "
                                 "rerun neuron_histograms")
        t = divergence_table(hist, epsilon, dead_fraction, rank_by)
        log.info("layer%d/%s: KL sum median %.3f, max %.3f (neuron %d); %d dead of %d", hist.layer, hist.state,
                 t["kl_sum"].median(), t["kl_sum"].max(), int(t["kl_sum"].idxmax()), int(t["dead"].sum()), len(t))
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "model", str(attrs.get("model", "")))
    table.insert(1, "text", str(attrs.get("text", "")))
    table.insert(2, "dropout", float(attrs.get("dropout", np.nan)))
    table = table[COLUMNS]
    table.insert(COLUMNS.index("rank") + 1, "rank_by", rank_by)
    write_table(table, csv_path, "%.8g")
    dead = table[table["dead"]]
    write_table(dead.drop(columns=["rank", "rank_by"]), dead_csv_path, "%.8g")
    log.info("%d dead neurons (near-zero fraction > %g) of %d (layer x state x neuron)", len(dead), dead_fraction,
             len(table))
    return table


NUMBER_COLUMNS = ["dropout", "kl_pq", "kl_qp", "kl_sum", "near_zero_fraction", "mean", "std", "mean_abs", "min",
                  "max", "underflow", "overflow"]


def read_divergence(path: str | os.PathLike) -> pd.DataFrame:
    """A divergence table written by :func:`neuron_divergence`: one model's, of one text, each neuron of a layer and
    state once. Errors name the file and the column, row or value (a row is numbered as the file's line)."""
    table = read_table(path, COLUMNS, "divergence table", HistogramError)

    def refuse(bad: pd.Series, col: str, must: str) -> None:
        refuse_rows(table, bad, col, must, path, HistogramError)

    for col in ("layer", "neuron", "rank"):
        number = pd.to_numeric(table[col], errors="coerce")
        # a dead neuron has no rank (a mask, not False: ``~False`` is -1, and refused from Python 3.16)
        unranked = table[col].isna() if col == "rank" else pd.Series(False, index=table.index)
        refuse(~unranked & (number.isna() | (number != number.round()) | (number < (0 if col == "neuron" else 1))),
               col, "whole numbers from 0" if col == "neuron" else "whole numbers from 1")
        table[col] = number.astype("Int64" if col == "rank" else np.int64)
    number_columns(table, NUMBER_COLUMNS, path, HistogramError)  # an empty cell too: a mean or a model left out
    refuse_unnamed(table, ["model", "text"], path, HistogramError)
    refuse(~table["dead"].astype(str).isin(["True", "False"]), "dead", "True or False")
    table["dead"] = table["dead"].astype(str) == "True"
    refuse(~table["state"].isin(["h", "c"]), "state", "h or c")
    refuse_mixed(table, ["model", "text"], path, HistogramError, "a divergence table is one model's, of one text")
    twice = table.duplicated(["layer", "state", "neuron"])
    if twice.any():
        i = int(np.argmax(twice.to_numpy()))
        r = table.iloc[i]
        raise HistogramError(f"{path}: line {i + 2} repeats layer {r['layer']} {r['state']} neuron {r['neuron']}")
    live = ~table["dead"]
    refuse(live & table["rank"].isna(), "rank", "a rank for every live neuron")
    refuse(~live & table["rank"].notna(), "rank", "no rank for a dead neuron")
    if "rank_by" in table.columns:  # what every rank follows: one measure, a known one
        refuse(~table["rank_by"].astype(str).isin(RANK_BY), "rank_by", f"one of {', '.join(RANK_BY)}")
        refuse(table["rank_by"].astype(str) != str(table["rank_by"].iloc[0]), "rank_by",
               f"the same measure on every line (line 2: {table['rank_by'].iloc[0]})")
    # every layer and state holds the same neurons 0..N-1: a missing one would leave a figure's counts short. N is
    # what most of them hold, so the error names the stray line (a neuron or layer mistyped), not the others
    sizes = table.groupby(["layer", "state"], sort=True)["neuron"].size()
    # (the most common size, a tie the larger; with one layer and state, its largest neuron: nothing to compare.
    # Where most layers and states lack the same last neuron, the whole one is named as the stray: rare, still refused)
    width = (int(sizes.value_counts().sort_index(ascending=False).idxmax()) if len(sizes) > 1
             else int(table["neuron"].max()) + 1)
    beyond = table["neuron"] >= width
    if beyond.any():
        i = int(np.argmax(beyond.to_numpy()))
        r = table.iloc[i]
        raise HistogramError(f"{path}: line {i + 2}: layer {r['layer']} {r['state']} neuron {r['neuron']} is beyond "
                             f"the neurons 0-{width - 1} the other layers and states hold; a divergence table has "
                             "every neuron once")
    held = "the other layers and states hold" if len(sizes) > 1 else "its largest neuron implies"
    for (layer, state), size in sizes.sort_values(kind="stable").items():  # the smallest first: the likeliest stray
        if size != width:
            rows = ((table["layer"] == layer) & (table["state"] == state)).to_numpy()
            lacking = sorted(set(range(width)) - set(table.loc[rows, "neuron"].tolist()))
            first = int(np.argmax(rows))
            raise HistogramError(f"{path}: layer {layer} {state} lacks neuron {lacking[0]} ({size} of the neurons "
                                 f"0-{width - 1} {held}, the first on line {first + 2}); a "
                                 "divergence table has every neuron")
    same_rank = live & table.duplicated(["layer", "state", "rank"])
    if same_rank.any():  # "rank 1" twice: the top neurons would be whichever came first
        i = int(np.argmax(same_rank.to_numpy()))
        r = table.iloc[i]
        raise HistogramError(f"{path}: line {i + 2} repeats rank {r['rank']} of layer {r['layer']} {r['state']}; "
                             "each live neuron of a layer and state has a rank of its own")
    table.attrs["source"] = str(path)
    return table


def ranked(table: pd.DataFrame, layer: int, state: str, k: int, bottom: bool = False) -> pd.DataFrame:
    """The ``k`` top-ranked (or bottom-ranked) live neurons of one layer and state."""
    sub = table[(table["layer"] == layer) & (table["state"] == state)]
    if sub.empty:
        have = sorted({f"layer{r.layer}/{r.state}" for r in table.itertuples()})
        raise HistogramError(f"{_source(table)}: layer {layer} / state {state!r} does not exist; have "
                             f"{', '.join(have)}")
    live = sub[sub["rank"].notna()].sort_values("rank")
    return live.tail(k).iloc[::-1] if bottom else live.head(k)
