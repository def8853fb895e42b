"""The context probes of every model of one text against dropout: a table and a figure (see :mod:`.probes`)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from .atomic import write_table
from .figures import STATE_NAMES, figure_title, plt, save_figure
from .neuron_figures import STATE_COLOUR
from .order import models_in_order
from .probes import CONTEXTS, read_probes

#: What each line of a panel is: the probe's column, its label, and how it is drawn (the state's colour, but the two
#: baselines without a state in grey).
SERIES = (("layer_auc", "the whole layer (logistic regression)", {"ls": "-", "marker": "o"}),
          ("neuron_auc", "its best neuron (chosen on the training part)", {"ls": "--", "marker": "s"}),
          ("kl_neuron_auc", "the best of its top-KL neurons (likewise)", {"ls": ":", "marker": "^"}),
          ("random_neurons_auc", "the best of as many random live neurons (expected)", {"ls": "-.", "marker": "",
                                                                                      "alpha": 0.6}),
          ("word_auc", "the word alone (no state)", {"ls": "-", "marker": ".", "color": "0.55"}),
          ("window_auc", "the last {words} (no state)", {"ls": "--", "marker": ".", "color": "0.3"}))
#: the columns drawn in each state's colour (the others do not depend on the state)
STATE_SERIES = ("layer_auc", "neuron_auc", "kl_neuron_auc", "random_neurons_auc")
CONTEXT_NAME = {"quote": "inside quotation marks", "paren": "inside parentheses", "pre_number": "before a number",
                "pre_eos": "before <eos>", "heading": "in a heading"}


def probes_table(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Every model's probes of one text, by layer, state, context and dropout (the models in their order)."""
    table = read_probes(paths)
    table["context"] = pd.Categorical(table["context"], categories=CONTEXTS, ordered=True)
    table = table.sort_values(["layer", "state", "context", "dropout", "model"], key=models_in_order, kind="stable")
    table["context"] = table["context"].astype(str)
    return table.reset_index(drop=True)


def probes_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, title: str,
                  dpi: int = 150, window: int | None = None) -> None:
    """A panel per context (rows) and layer x state (columns): the test AUC of each probe against dropout, one point
    per model, the line through each dropout's mean; 0.5 (chance) dashed. A row's panels share a y range, from just
    under its lowest score (or from 0.9, where every score is higher) to just above 1: in one range for every row,
    a context whose probes all score above 0.9 had them pressed together at the top. A context without
    scores in a view (too few tokens) leaves its panel empty with a note; a context without scores in any view has
    no row, and the title names it. ``window``: the window baseline's words, for its legend entry."""
    views = sorted({(int(r.layer), str(r.state)) for r in table.itertuples()}, key=lambda v: (v[0], v[1] != "h"))
    present = [c for c in CONTEXTS if c in set(table["context"])]
    contexts = [c for c in present if table.loc[table["context"] == c, "layer_auc"].notna().any()] or present
    unscored = [CONTEXT_NAME[c] for c in present if c not in contexts]
    if unscored:
        title += f"; no row {' or '.join(unscored)}: too few tokens in that context"
    fig, axes = plt.subplots(len(contexts), len(views), figsize=(2.6 * len(views) + 0.6, 2.0 * len(contexts) + 0.8),
                             squeeze=False, sharex=True, sharey="row")
    scored = table[list(c for c, _, _ in SERIES)].to_numpy(dtype=float)
    words = "words" if window is None else f"{window} word{'s' * (window != 1)}"
    series_label = {column: label.format(words=words) for column, label, _ in SERIES}
    handles = {}
    for i, context in enumerate(contexts):
        for j, (layer, state) in enumerate(views):
            ax = axes[i, j]
            sub = table[(table["layer"] == layer) & (table["state"] == state) & (table["context"] == context)]
            ax.axhline(0.5, color="0.7", lw=0.8, ls="--", zorder=0)
            if sub["layer_auc"].isna().all():
                ax.text(0.5, 0.5, "too few tokens\nin the context", transform=ax.transAxes, ha="center",
                        va="center", fontsize=8, color="0.4")
            for column, _, style in SERIES:
                label = series_label[column]
                style = {"color": STATE_COLOUR[state], "alpha": 1.0, **style}
                means = sub.groupby("dropout")[column].mean().dropna()
                line, = ax.plot(means.index, means.to_numpy(), lw=1.2, ls=style["ls"], color=style["color"],
                                marker=style["marker"] or None, ms=4, alpha=style["alpha"])
                if style["marker"]:
                    ax.scatter(sub["dropout"], sub[column], s=10, marker=style["marker"], color=style["color"],
                               zorder=3)
                if column in STATE_SERIES:
                    handles.setdefault((column, state), (line, f"{state}: {label}"))
                else:  # one entry for a line that is the same in every view
                    handles.setdefault((column, None), (line, label))
            if i == 0:
                ax.set_title(f"layer {layer}, {STATE_NAMES[state]}", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{CONTEXT_NAME[context]}\nAUC on the held-out part", fontsize=9)
            if i == len(contexts) - 1:
                ax.set_xlabel("dropout")
    for i, context in enumerate(contexts):
        row = scored[(table["context"] == context).to_numpy()]
        low = float(np.nanmin(row)) if np.isfinite(row).any() else 0.5
        axes[i, 0].set_ylim(min(0.9, low - 0.02), 1.02)  # a point at 1 whole, not cut by the frame
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    # a column per state, its four probes, and one for the baselines without a state (legend columns take equal
    # shares of the entries, so each column is filled to the longest with blank entries)
    columns = [[handles[(c, state)] for c in STATE_SERIES if (c, state) in handles] for state in ("h", "c")]
    columns.append([handles[(c, None)] for c, _, _ in SERIES if (c, None) in handles])
    columns = [col for col in columns if col]
    rows = max(len(col) for col in columns)
    blank = (Patch(visible=False), "")
    entries = [entry for col in columns for entry in col + [blank] * (rows - len(col))]
    lines, labels = [e[0] for e in entries], [e[1] for e in entries]
    fig.legend(lines, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(columns), fontsize=8, frameon=False)
    save_figure(fig, png, svg, dpi=dpi)


def probes_vs_dropout(paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike, png: str | os.PathLike,
                      svg: str | os.PathLike, dpi: int = 150, window: int | None = None) -> pd.DataFrame:
    """The combined table of one text's probes and its figure (``window``: the probes' ``probe.window``, for the
    legend)."""
    table = probes_table(paths)
    write_table(table, csv_path, "%.6g")
    models = table["model"].nunique()
    probes_figure(table, png, svg, title=f"Context probes, text {table['text'].iloc[0]}: how well a layer, its best "
                  f"neuron and the words alone tell the context ({models} model{'s' * (models != 1)})", dpi=dpi,
                  window=window)
    return table
