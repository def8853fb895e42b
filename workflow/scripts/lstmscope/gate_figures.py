"""The gates of the LSTM (:mod:`.gates`) drawn: one model's saturation plot, and every model's gates against dropout."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker

from .atomic import write_table
from .figures import figure_title, plt, save_figure
from .gate_summary import read_divergences, read_gates, summarise
from .gate_table import GATES
from .order import models_in_order

GATE_NAME = {"input": "input gate i", "forget": "forget gate f", "cell": "candidate g (tanh)",
             "output": "output gate o"}
#: a colour per layer, in order (a seventh layer starts them again)
LAYER_COLOURS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def layer_colour(layer: int) -> str:
    return LAYER_COLOURS[(layer - 1) % len(LAYER_COLOURS)]


def _thresholds(gate: str, saturation: float) -> str:
    """What counts as saturated for a gate (a sigmoid, on [0, 1]: shut and wide open) or for the candidate g (a tanh,
    on [-1, 1]: low and high, the same share of its range), with true minus signs."""
    if gate == "cell":
        return ticker.Formatter.fix_minus(f"low < {-1 + 2 * saturation:g}, high > {1 - 2 * saturation:g}")
    return f"shut < {saturation:g}, wide open > {1 - saturation:g}"


def saturation_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, title: str,
                      dpi: int = 150) -> None:
    """One model's neurons, a point per neuron in a panel per gate: the share of tokens where the gate is shut (x)
    against the share where it is wide open (y), coloured by layer (Karpathy et al. 2015, Fig. 3); for the candidate
    g, which closes nothing, saturated low and high. No point lies above the diagonal x + y = 1. The thresholds are
    the table's ``saturation``."""
    saturation = float(table["saturation"].iloc[0])
    layers = sorted(int(v) for v in table["layer"].unique())
    fig, axes = plt.subplots(1, len(GATES), figsize=(3.1 * len(GATES), 3.6), squeeze=False, sharex=True,
                             sharey=True)
    for ax, gate in zip(axes[0], GATES):
        ax.plot([0, 1], [1, 0], color="0.75", lw=0.8, ls="--", zorder=0)
        for layer in layers:
            view = table[table["layer"] == layer]
            ax.scatter(view[f"{gate}_left"], view[f"{gate}_right"], s=9, alpha=0.6, color=layer_colour(layer),
                       edgecolors="none", label=f"layer {layer}")
        ax.set_title(f"{GATE_NAME[gate]}\n{_thresholds(gate, saturation)}", fontsize=10)
        if gate == "cell":  # a value written into the cell, not a gate: it shuts nothing
            ax.set_xlabel("share of tokens low", fontsize=9)
            ax.set_ylabel("share of tokens high", fontsize=9)  # (its own: the gates' y is "wide open")
        else:
            ax.set_xlabel("share of tokens shut", fontsize=9)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
    axes[0, 0].set_ylabel("share of tokens wide open", fontsize=9)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))  # room for the title above the panels' two-line titles
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, [f"{label} (a point per neuron)" for label in labels], loc="upper center",
               bbox_to_anchor=(0.5, -0.04), ncol=len(layers), fontsize=8, frameon=False, markerscale=2)
    save_figure(fig, png, svg, dpi=dpi)


def gate_figure(csv_path: str | os.PathLike, png: str | os.PathLike, svg: str | os.PathLike,
                dpi: int = 150) -> pd.DataFrame:
    """The saturation plot of one model's gate table."""
    table = read_gates([csv_path])
    first = table.iloc[0]
    saturation_figure(table, png, svg, title=f"How often each gate is shut or wide open: model {first['model']}, text "
                      f"{first['text']} (saturation {first['saturation']:g})", dpi=dpi)
    return table


def gates_table(paths: Sequence[str | os.PathLike], divergence_paths: Sequence[str | os.PathLike] = (),
                top_k: int = 5) -> pd.DataFrame:
    """The summary (:func:`.gate_summary.summarise`) of every model's gates of one text, by layer, gate and dropout;
    with the models' divergence tables, the forget timescale of their top-KL cell-state neurons as well."""
    gates = read_gates(paths)
    divergence = read_divergences(divergence_paths, gates) if divergence_paths else None
    summary = summarise(gates, divergence, top_k)
    summary["gate"] = pd.Categorical(summary["gate"], categories=GATES, ordered=True)
    summary = summary.sort_values(["layer", "gate", "dropout", "model"], key=models_in_order, kind="stable")
    summary["gate"] = summary["gate"].astype(str)
    return summary.reset_index(drop=True)


def _through_means(ax, sub: pd.DataFrame, column: str, colour: str, ls: str, marker: str):
    """One point per model, the line through each dropout's mean; returns the line (for the legend)."""
    means = sub.groupby("dropout")[column].mean()
    line, = ax.plot(means.index, means.to_numpy(), color=colour, ls=ls, lw=1.2, marker=marker, ms=4)
    ax.scatter(sub["dropout"], sub[column], color=colour, marker=marker, s=10, zorder=3)
    return line


def _log_ticks(ax) -> None:
    """A log y axis with plain-text tick labels (mathtext's labels need fonts not always there), as many per decade as
    the data's span leaves room for: 1, 1.5, 2, 3, ..., 8 within a factor of 5 (timescales of 0.72 to 3.2 tokens had
    none below 1), 1, 1.5, 2, 3, 5, 7 within a decade (0.7 to 2.6 had labels at 1 and 2 only), 1, 2, 5 within two, 1
    beyond."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    span = high / low if low > 0 else np.inf
    subs = ((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0) if span < 5 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if span < 10
            else (1.0, 2.0, 5.0) if span < 100 else (1.0,))
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=subs))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def gates_vs_dropout_figure(summary: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, title: str,
                            dpi: int = 150) -> None:
    """A panel per gate: the share of neuron-token pairs where the gate is shut (solid) and wide open (dashed), per
    layer, against dropout; a last panel: the forget gate's timescale, median (solid) and 90th percentile (dotted)
    of the neurons and, where the table has it, the median of the top-KL cell-state neurons (dashed), on a log
    scale."""
    layers = sorted(int(v) for v in summary["layer"].unique())
    saturation = float(summary["saturation"].iloc[0])
    fig, axes = plt.subplots(1, len(GATES) + 1, figsize=(2.9 * (len(GATES) + 1), 3.4), squeeze=False)
    axes = axes[0]
    handles: dict[str, list] = {}  # a legend column per kind of line, a row per layer
    for ax, gate in zip(axes, GATES):
        for layer in layers:
            sub = summary[(summary["layer"] == layer) & (summary["gate"] == gate)]
            shut = _through_means(ax, sub, "left", layer_colour(layer), "-", "o")
            wide = _through_means(ax, sub, "right", layer_colour(layer), "--", "s")
            if gate == GATES[0]:
                handles.setdefault("shut", []).append((shut, f"layer {layer}: shut (g: low)"))
                handles.setdefault("wide", []).append((wide, f"layer {layer}: wide open (g: high)"))
        ax.set_title(f"{GATE_NAME[gate]}\n{_thresholds(gate, saturation)}", fontsize=10)
        ax.set_xlabel("dropout")
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("share of neuron-token pairs")
    ax = axes[-1]
    for layer in layers:
        sub = summary[(summary["layer"] == layer) & (summary["gate"] == "forget")]
        median = _through_means(ax, sub, "timescale_median", layer_colour(layer), "-", "v")  # (circles: shut)
        p90 = _through_means(ax, sub, "timescale_p90", layer_colour(layer), ":", "^")
        handles.setdefault("median", []).append((median, f"layer {layer}: timescale of the median neuron"))
        handles.setdefault("p90", []).append((p90, f"layer {layer}: timescale, 90th percentile"))
        if sub["timescale_top_kl"].notna().any():
            top = _through_means(ax, sub, "timescale_top_kl", layer_colour(layer), "--", "D")
            handles.setdefault("top", []).append((top, f"layer {layer}: timescale of the top-KL neurons of c (median)"))
    _log_ticks(ax)
    ax.set_title("forget timescale", fontsize=10)
    ax.set_xlabel("dropout")
    ax.set_ylabel("tokens to 1/e (1 / mean −ln f)")
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    entries = [entry for column in handles.values() for entry in column]  # matplotlib fills a column, then the next
    fig.legend([h for h, _ in entries], [label for _, label in entries], loc="upper center",
               bbox_to_anchor=(0.5, 0), ncol=len(handles), fontsize=8, frameon=False)
    save_figure(fig, png, svg, dpi=dpi)


def gates_vs_dropout(paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike, png: str | os.PathLike,
                     svg: str | os.PathLike, dpi: int = 150,
                     divergence_paths: Sequence[str | os.PathLike] = (), top_k: int = 5) -> pd.DataFrame:
    """The summary table of one text's gate tables and its figure (with the divergence tables: the top-KL cell-state
    neurons' timescale as well)."""
    summary = gates_table(paths, divergence_paths, top_k)
    write_table(summary, csv_path, "%.6g")
    models = summary["model"].nunique()
    gates_vs_dropout_figure(summary, png, svg, title=f"The LSTM's gates against dropout, text "
                            f"{summary['text'].iloc[0]}: how often they are shut or wide open (saturation "
                            f"{summary['saturation'].iloc[0]:g}) and how long a cell keeps its value ({models} "
                            f"model{'s' * (models != 1)})", dpi=dpi)
    return summary
