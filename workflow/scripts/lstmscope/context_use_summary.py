"""The context-use tables (:mod:`.context_use`) read back, summarised per model and class of word, and drawn against
the context's length and dropout; no torch."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker

from .ablation_figures import spread_gap
from .atomic import write_table
from .cluster_figures import MODEL_MARKERS, model_colours
from .context_use_table import COLUMNS, NUMBERS, VARIANTS
from .figures import figure_title, plt, save_figure
from .order import models_in_order
from .word_classes import WORD_CLASSES

WORDS = ("all", *WORD_CLASSES)
SUMMARY_COLUMNS = ["model", "text", "dropout", "words", "positions", "longest", "tolerance", "stream_loss",
                   "window_increase", "effective_context", "order_span"]
CI_Z = 1.96  # the figure's bands: +- this many standard errors


def read_context_tables(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The tables of :func:`.context_use.context_use` (one per model, all of one text), one under the other; a
    ValueError names the file and the column and line of a missing or wrong value, a repeated or missing row, a
    second table of a model, or another text."""
    from .checked_files import read_tables, refuse_mixed, refuse_rows, refuse_unnamed

    frames = []
    for path in paths:
        table = read_tables([path], COLUMNS, NUMBERS, "context-use table", ValueError,
                            whole=("length", "longest", "positions"), may_be_empty=("increase_se",))
        refuse_unnamed(table, ["text", "words", "variant"], path, ValueError)
        refuse_mixed(table, ["text", "dropout", "longest"], path, ValueError,
                     "a context-use table is one model's and text's, read once")
        refuse_rows(table, ~table["variant"].isin(VARIANTS).to_numpy(), "variant", " or ".join(VARIANTS), path,
                    ValueError)
        refuse_rows(table, ~table["words"].isin(WORDS).to_numpy(), "words", f"one of {', '.join(WORDS)}", path,
                    ValueError)
        longest = int(table["longest"].iloc[0])
        refuse_rows(table, ((table["length"] < 1) | (table["length"] > longest)).to_numpy(), "length",
                    f"lengths from 1 to the longest, {longest}", path, ValueError)
        refuse_rows(table, ((table["variant"] == "shuffled") & (table["length"] >= longest)).to_numpy(), "length",
                    f"shorter lengths than the longest ({longest}) where the variant is shuffled", path, ValueError)
        refuse_rows(table, (table["positions"] < 1).to_numpy(), "positions", "positive counts", path, ValueError)
        refuse_rows(table, (table["loss"] < 0).to_numpy() | (table["stream_loss"] < 0).to_numpy(), "loss",
                    "losses (-log p >= 0), as stream_loss", path, ValueError)
        # the increase is the mean of the paired differences, so the difference of the means (to the table's digits)
        off = (table["increase"] - (table["loss"] - table["stream_loss"])).abs() > 1e-4 * (1 + table["loss"].abs())
        refuse_rows(table, off.to_numpy(), "increase", "loss - stream_loss (to the table's digits)", path, ValueError)
        twice = table.duplicated(["words", "variant", "length"]).to_numpy()
        if twice.any():
            r = table.iloc[int(np.argmax(twice))]
            raise ValueError(f"{path}: line {int(np.argmax(twice)) + 2} repeats words {r['words']} {r['variant']} "
                             f"length {r['length']}")
        whole = table[(table["words"] == "all") & (table["variant"] == "truncated")]
        if longest not in set(whole["length"]):
            raise ValueError(f"{path}: no row of all words truncated to the longest length, {longest}: the table is "
                             "damaged")
        # the contexts a job reads: every length truncated, every one but the longest shuffled; each class of word
        # has a row of each (a lost row would leave a length out of the effective context or the order span)
        lengths = sorted(set(whole["length"].astype(int)))
        contexts = {("truncated", k) for k in lengths} | {("shuffled", k) for k in lengths[:-1]}
        for words, rows in table.groupby("words", sort=False):
            held = set(zip(rows["variant"], rows["length"].astype(int)))
            odd = sorted(contexts ^ held)
            if odd:
                variant, k = odd[0]
                raise ValueError(f"{path}: words {words} {'lack' if (variant, k) in contexts else 'add'} the row of "
                                 f"{variant} length {k}, where the table's contexts are the lengths "
                                 f"{', '.join(map(str, lengths))} truncated and all but {longest} shuffled: the table "
                                 "is damaged")
        # every context predicts the same words: one count per class, its most common (a damaged row named, not the
        # class's first)
        usual = table.groupby("words", sort=False)["positions"].transform(lambda counts: counts.mode().iloc[0])
        refuse_rows(table, (table["positions"] != usual).to_numpy(), "positions",
                    "one count per class of word (every context predicts the same words)", path, ValueError)
        if frames and table["text"].iloc[0] != frames[0]["text"].iloc[0]:
            raise ValueError(f"{path} is a context-use table of text {table['text'].iloc[0]}, {paths[0]} of text "
                             f"{frames[0]['text'].iloc[0]}: give the tables of one text")
        if frames and str(table["model"].iloc[0]) in {str(f["model"].iloc[0]) for f in frames}:
            raise ValueError(f"{path} is a second context-use table of model {table['model'].iloc[0]}: give one per "
                             "model")
        frames.append(table)
    if not frames:
        raise ValueError("no context-use tables given")
    return pd.concat(frames, ignore_index=True)


def shortest_enough(lengths: np.ndarray, excess: np.ndarray, allowed: float) -> float:
    """The shortest of ``lengths`` from which on every longer one's ``excess`` is at most ``allowed`` (a curve that
    dips under and rises again counts from where it stays under); NaN where the longest's is over."""
    order = np.argsort(lengths)
    lengths, over = np.asarray(lengths)[order], np.asarray(excess)[order] > allowed
    if over[-1]:
        return float("nan")
    last_over = np.flatnonzero(over)
    return float(lengths[last_over[-1] + 1] if len(last_over) else lengths[0])


def summarise(table: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per model and class of word: the stream's loss on the positions, the increase of a context of the longest
    length, the effective context (the shortest length from which the truncated context's increase stays within
    ``tolerance`` x the stream's loss; NaN: more than the longest) and the order span (the shortest length whose
    nearest words, kept in order, with the rest of the longest window shuffled, stay within as much of the window in
    order: the far words' order no longer matters)."""
    if not 0 < tolerance < 1:
        raise ValueError(f"context_use.tolerance={tolerance}: must be between 0 and 1 (a share of the loss)")
    rows = []
    for (model, words), group in table.groupby(["model", "words"], sort=False):
        truncated = group[group["variant"] == "truncated"].sort_values("length")
        shuffled = group[group["variant"] == "shuffled"].sort_values("length")
        longest = int(group["longest"].iloc[0])
        window = truncated[truncated["length"] == longest]
        if window.empty:  # a class of word with no row at the longest length has no positions at any
            continue
        stream = float(window["stream_loss"].iloc[0])
        allowed = tolerance * stream
        order_lengths = np.append(shuffled["length"].to_numpy(), longest)
        order_excess = np.append(shuffled["loss"].to_numpy() - float(window["loss"].iloc[0]), 0.0)
        rows.append({"model": model, "text": group["text"].iloc[0], "dropout": float(group["dropout"].iloc[0]),
                     "words": words, "positions": int(window["positions"].iloc[0]), "longest": longest,
                     "tolerance": tolerance, "stream_loss": stream,
                     "window_increase": float(window["increase"].iloc[0]),
                     "effective_context": shortest_enough(truncated["length"].to_numpy(),
                                                          truncated["increase"].to_numpy(), allowed),
                     "order_span": shortest_enough(order_lengths, order_excess, allowed)})
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["words"] = pd.Categorical(summary["words"], categories=WORDS, ordered=True)
    summary = summary.sort_values(["dropout", "model", "words"], key=models_in_order, kind="stable")
    summary["words"] = summary["words"].astype(str)
    return summary.reset_index(drop=True)


def _log_lengths(ax, axis: str, lengths: Sequence[int]) -> None:
    """A log scale with the lengths as plain tick labels (mathtext's labels need fonts not always there)."""
    scale = getattr(ax, f"set_{axis}scale")
    scale("log")
    where = getattr(ax, f"{axis}axis")
    where.set_major_locator(ticker.FixedLocator(sorted(lengths)))
    where.set_minor_locator(ticker.NullLocator())
    where.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


CLASS_STYLE = {"all": ("-", "o"), "function": (":", "^"), "content": ("--", "s")}  # (line, marker) in panels c, d
# panels c, d: the classes side by side (as shares of the smallest gap between the figure's dropouts), all words in
# the middle: their lengths are whole words, often equal, and one class's points would hide another's
CLASS_DODGE = {"all": 0.0, "function": -0.15, "content": 0.15}


def context_use_figure(table: pd.DataFrame, summary: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike,
                       title: str, dpi: int = 150) -> None:
    """(a) each model's loss with the context cut to the last k words, above its loss after the whole text, as a
    share of the latter, against k; (b) the same with the last k words in order and the longest window's others
    shuffled; (c) the effective context and (d) the order span against dropout, of all words, function words and
    content words: a point per model, the line through each dropout's median, the point hollow above the longest
    length where the context was more than that (in the median too)."""
    models = list(dict.fromkeys(summary["model"]))
    colours = model_colours(models)  # as in the cluster figures across models
    markers = {model: MODEL_MARKERS[k % len(MODEL_MARKERS)] for k, model in enumerate(models)}
    lengths = sorted(set(table["length"].astype(int)) | set(table["longest"].astype(int)))
    tolerance = float(summary["tolerance"].iloc[0])
    fig, axes = plt.subplots(1, 4, figsize=(15.5, 3.8))
    whole = table[table["words"] == "all"]
    gap = spread_gap(summary["dropout"])
    for ax, variant in zip(axes[:2], VARIANTS):
        for model in models:
            rows = whole[(whole["model"] == model)]
            line = rows[rows["variant"] == variant].sort_values("length")
            if variant == "shuffled":  # ends at the longest window in order
                line = pd.concat([line, rows[(rows["variant"] == "truncated")
                                             & (rows["length"] == rows["longest"])]])
            share = 100 * line["increase"].to_numpy() / line["stream_loss"].to_numpy()
            band = 100 * CI_Z * line["increase_se"].fillna(0).to_numpy() / line["stream_loss"].to_numpy()
            x = line["length"].to_numpy()
            ax.fill_between(x, share - band, share + band, color=colours[model], alpha=0.15, linewidth=0)
            ax.plot(x, share, color=colours[model], lw=1.3, marker=markers[model], ms=3.5, label=model)
        ax.axhline(100 * tolerance, color="0.4", ls="--", lw=0.8)
        ax.axhline(0, color="0.6", lw=0.6)
        _log_lengths(ax, "x", lengths)
        ax.set_xlabel("words of context k")
    axes[0].set_title("(a) only the last k words read", fontsize=10)
    axes[1].set_title("(b) the words before the last k shuffled", fontsize=10)
    axes[0].set_ylabel("loss above the whole text's (% of it)")
    axes[1].sharey(axes[0])
    for ax, column, name in ((axes[2], "effective_context", "(c) effective context"),
                             (axes[3], "order_span", "(d) span whose order matters")):
        for words, (ls, marker) in CLASS_STYLE.items():
            sub = summary[summary["words"] == words]
            if sub.empty:
                continue
            values = sub[column].fillna(np.inf)  # empty: more than the longest, which a median must count as long
            medians = values.groupby(sub["dropout"]).median()
            dodge = CLASS_DODGE[words] * gap
            ax.plot(medians.index + dodge, medians.where(np.isfinite(medians)).to_numpy(), color="0.2", ls=ls,
                    marker=marker, ms=4, lw=1.1, label=f"{words} words" if words != "all" else "all words")
            over = ~np.isfinite(values.to_numpy())
            ax.scatter(sub["dropout"][~over] + dodge, values[~over], color="0.2", marker=marker, s=10, zorder=3)
            if over.any():  # at the top, hollow: more than the longest
                ax.scatter(sub["dropout"][over] + dodge, np.full(over.sum(), max(lengths) * 1.5), marker=marker,
                           s=22, facecolors="none", edgecolors="0.2", zorder=3)
        _log_lengths(ax, "y", lengths)
        ax.set_ylim(min(lengths) / 1.3, max(lengths) * 1.8)
        ax.set_xlabel("dropout")
        ax.set_ylabel("words")
        ax.set_title(name, fontsize=10)
    axes[3].legend(fontsize=8, frameon=False)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=min(len(models), 9), fontsize=8,
               frameon=False)
    save_figure(fig, png, svg, dpi=dpi)


def context_use_vs_dropout(paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike,
                           png: str | os.PathLike, svg: str | os.PathLike, tolerance: float = 0.01,
                           dpi: int = 150) -> pd.DataFrame:
    """The summary table of one text's context-use tables and its figure."""
    table = read_context_tables(paths)
    summary = summarise(table, tolerance)
    write_table(summary, csv_path, "%.6g")
    n = summary["model"].nunique()
    positions = int(summary.loc[summary["words"] == "all", "positions"].max())
    context_use_figure(table, summary, png, svg, dpi=dpi, title=(
        f"How much of the text before a word each model uses, text {summary['text'].iloc[0]} ({positions} words "
        f"predicted per model, {n} model{'s' * (n != 1)}): dashed line and (c, d) within {100 * tolerance:g} % of "
        f"the loss after the whole text; (a, b) shaded \u00b1{CI_Z:g} standard errors; a hollow marker at the top "
        f"of (c): more than {int(summary['longest'].max())} words"))
    return summary
