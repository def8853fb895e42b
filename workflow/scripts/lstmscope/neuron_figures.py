"""Figures of the neurons' value distributions (thesis Fig. 5.1, 5.2/5.5, 5.6, 5.7).

Every curve is a density: counts / (values x bin width), so that h (on [-1, 1])
and c (on the configured cell range) share one y scale. Values outside the
binned interval are never dropped silently: the share below and above is
printed on the panel.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker

from .divergence import COLUMNS, RANK_BY, check_divergence_fits, ranked, ranking_measure, read_divergence
from .figures import STATE_NAMES, figure_title, plt, save_figure
from .histogram import HistogramError, StoredHistogram, read_histograms, select
from .order import models_in_order

log = logging.getLogger(__name__)

STATE_COLOUR = {"h": "tab:blue", "c": "tab:orange"}


def density(hist: StoredHistogram, neurons: np.ndarray | None = None) -> np.ndarray:
    """Density of every bin, for the chosen neurons (rows) or for the layer average (1-D)."""
    width = np.diff(hist.edges)
    if neurons is None:
        return hist.counts.sum(axis=0) / (hist.n_values * hist.neurons * width)
    return hist.counts[neurons] / (hist.n_values * width)


def _step(ax, hist: StoredHistogram, y: np.ndarray, skip_empty: bool = True, **kw) -> None:
    """A histogram as a step line (a Line2D: far cheaper to draw than ``stairs`` for thousands of bins).
    Empty bins are left out (on the log scale they have no height), so scattered single values read as short
    dashes at their density instead of a block of lines dropping to the axis floor; ``skip_empty=False`` draws
    them down to the floor (a dead neuron's one full bin is then a spike, not a one-bin dash)."""
    if skip_empty:
        y = np.where(y > 0, y, np.nan)
    ax.plot(hist.edges, np.append(y, y[-1]), drawstyle="steps-post", **kw)


def _log_y(ax) -> None:
    """Logarithmic y axis with plain-text labels and no minor ticks (mathtext tick labels are slow)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(numticks=6))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


COVERAGE = 0.999  # the share of a layer's c values Fig. 5.2/5.5's x axis shows at least


def _x_extent(hist: StoredHistogram, neurons: np.ndarray, coverage: float = COVERAGE) -> tuple[float, float]:
    """x limits showing ``coverage`` of the layer's values and every value of the chosen neurons (within the bins)."""
    if hist.state == "h":
        return float(hist.edges[0]), float(hist.edges[-1])
    total = hist.counts.sum(axis=0)
    cdf = np.cumsum(total) / max(1, total.sum())
    tail = (1 - coverage) / 2
    lo = hist.edges[int(np.searchsorted(cdf, tail))]
    hi = hist.edges[min(len(hist.edges) - 1, int(np.searchsorted(cdf, 1 - tail)) + 1)]
    if len(neurons):
        occupied = np.flatnonzero(hist.counts[neurons].sum(axis=0))
        if len(occupied):
            lo, hi = min(lo, hist.edges[occupied[0]]), max(hi, hist.edges[occupied[-1] + 1])
    pad = 0.02 * (hi - lo)
    return float(max(hist.edges[0], lo - pad)), float(min(hist.edges[-1], hi + pad))


def _reach_beyond(hist: StoredHistogram, x_range: tuple[float, float]) -> str:
    """Where the layer's values reach beyond the x axis, how far ("−12.3 to 15.8": the stored per-neuron min and
    max, beyond the histogram's interval too, where its bins end); else ""."""
    lows, highs = hist.minimum[np.isfinite(hist.minimum)], hist.maximum[np.isfinite(hist.maximum)]
    if not len(lows) or not len(highs):
        return ""
    low, high = float(lows.min()), float(highs.max())
    return f"{_number(low)} to {_number(high)}" if low < x_range[0] or high > x_range[1] else ""


def _outside_note(hist: StoredHistogram, neurons: np.ndarray | None = None) -> str:
    sel = slice(None) if neurons is None else neurons
    total = hist.n_values * (hist.neurons if neurons is None else len(np.atleast_1d(neurons)))
    under, over = int(np.sum(hist.underflow[sel])), int(np.sum(hist.overflow[sel]))
    if under + over == 0:
        return ""
    whose = "" if neurons is None else f" (the {len(np.atleast_1d(neurons))} neurons drawn)"
    bounds = ticker.Formatter.fix_minus(f"[{hist.edges[0]:g}, {hist.edges[-1]:g}]")
    return (f"outside {bounds}{whose}: {under} below ({100 * under / total:.2g}%), {over} above "
            f"({100 * over / total:.2g}%)")


# A panel's legend beside it, never over the curves it names.
LEGEND_OUTSIDE = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def _note_above(ax, lines: Sequence[str], title: str, fontsize: float) -> None:
    """``title`` over the panel with ``lines`` (the share of values outside the range) between it and the frame,
    left-aligned: inside the frame they ran through the curves' peaks."""
    ax.set_title(title, fontsize=fontsize, pad=4 + 9 * len(lines))
    if lines:
        ax.text(0.0, 1.01, "\n".join(lines), transform=ax.transAxes, va="bottom", ha="left", fontsize=7)


def distributions_figure(hists: Sequence[StoredHistogram], png: str | os.PathLike, svg: str | os.PathLike,
                         title: str, dpi: int = 150) -> None:
    """Fig. 5.1: the layer-average distribution of h and of c, one panel per layer."""
    layers = sorted({h.layer for h in hists})
    fig, axes = plt.subplots(len(layers), 1, figsize=(8, 2.8 * len(layers)), squeeze=False)
    for ax, layer in zip(axes[:, 0], layers):
        notes = []
        for state in ("h", "c"):
            hist = select(hists, layer, state)
            _step(ax, hist, density(hist), label=STATE_NAMES[state], color=STATE_COLOUR[state], lw=1.3)
            if note := _outside_note(hist):
                notes.append(f"{state}: {note}")
        c_hist = select(hists, layer, "c")
        c_lo, c_hi = _x_extent(c_hist, np.array([], dtype=int), coverage=0.9999)
        x_range = (min(-1.0, c_lo), max(1.0, c_hi))
        ax.set_xlim(*x_range)
        # the tails beyond the axis are said, not cut off unseen: how far the values reach, the histogram's
        # under- and overflow included (its bins end at histogram.cell_range)
        if reach := _reach_beyond(c_hist, x_range):
            notes.insert(0, f"c: x axis cut to the middle 99.99% of its values, which reach {reach}")
        _log_y(ax)
        _note_above(ax, notes, f"layer {layer}", 10)
        ax.set_xlabel("activation")
        ax.set_ylabel("density (log)")
        ax.legend(fontsize=8, **LEGEND_OUTSIDE)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


def top_bottom_figure(hists: Sequence[StoredHistogram], table: pd.DataFrame, k: int, png: str | os.PathLike,
                      svg: str | os.PathLike, title: str, dpi: int = 150) -> None:
    """Fig. 5.2/5.5: the top-k and bottom-k KL neurons of every layer and state against the layer average."""
    pairs = [(h.layer, h.state) for h in hists]
    measure = ranking_measure(table)  # what the ranks follow, shown in the legends
    fig, axes = plt.subplots(len(pairs), 2, figsize=(13, 2.6 * len(pairs)), squeeze=False)
    for row, (layer, state) in zip(axes, pairs):
        hist = select(hists, layer, state)
        top = ranked(table, layer, state, k)
        bottom_k = ranked(table, layer, state, k, bottom=True)
        # where 2k exceed the live neurons the ends meet: each neuron is drawn once, among the top
        picks = [top, bottom_k[~bottom_k["neuron"].isin(top["neuron"])]]
        # one x range for the row, so that the top and the bottom neurons compare by eye
        extents = [_x_extent(hist, p["neuron"].to_numpy()) for p in picks]
        x_range = (min(e[0] for e in extents), max(e[1] for e in extents))
        for ax, bottom, chosen in zip(row, (False, True), picks):
            _step(ax, hist, density(hist), color="black", lw=2.2, label="layer average", zorder=3)
            if chosen.empty:
                ax.text(0.5, 0.5, "every live neuron is among the top" if bottom and not top.empty else
                        "no live neuron", transform=ax.transAxes, ha="center")
            idx = chosen["neuron"].to_numpy()
            dens = density(hist, idx) if len(idx) else np.empty((0, hist.counts.shape[1]))
            for r, d in zip(chosen.itertuples(), dens):
                _step(ax, hist, d, lw=1.0, alpha=0.85,
                      label=f"n{r.neuron} (#{r.rank}, {RANK_BY[measure]} {getattr(r, measure):.2f})")
            which = "bottom" if bottom else "top"
            # the layer average's tails beyond the row's axis are said too
            reach = _reach_beyond(hist, x_range)
            notes = [f"the layer's values reach {reach}, beyond the x axis (its middle {100 * COVERAGE:g}% and the "
                     "neurons drawn)" if reach else "", _outside_note(hist, idx) if len(idx) else ""]
            _note_above(ax, [note for note in notes if note],
                        f"layer {layer}, {STATE_NAMES[state]}: {which} {len(chosen)} by {RANK_BY[measure]}", 9)
            ax.set_xlim(*x_range)
            _log_y(ax)
            ax.set_xlabel("activation", fontsize=8)
            ax.set_ylabel("density (log)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7, **LEGEND_OUTSIDE)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


def _number(value: float) -> str:
    """A value in a title: 3 significant digits, a true minus sign, no "-0"."""
    text = f"{float(value):.3g}"
    return "0" if float(text) == 0 else text.replace("-", "\u2212")


def dead_neuron_figure(hists: Sequence[StoredHistogram], table: pd.DataFrame, png: str | os.PathLike,
                       svg: str | os.PathLike, title: str, dead_threshold: float, dead_fraction: float,
                       dpi: int = 150) -> dict:
    """Fig. 5.6: the neuron with the largest share of near-zero values, against its layer average.

    When no neuron is dead, the neuron with the largest share of values within ±``dead_threshold`` is drawn all the
    same, and the title says just that, with its range of values: such a neuron is often one of one sign resting at
    zero (its values all on one side of 0), not the spike at zero of a dead one.
    """
    best = table.sort_values(["near_zero_fraction", "layer", "state", "neuron"], ascending=[False, True, True, True],
                             kind="stable").iloc[0]
    layer, state, neuron = int(best["layer"]), str(best["state"]), int(best["neuron"])
    hist = select(hists, layer, state)
    n_dead = int(table["dead"].sum())
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    zoom = max(5 * dead_threshold, 5 * float(np.diff(hist.edges)[0]))
    for ax, (lo, hi) in zip(axes, ((hist.edges[0], hist.edges[-1]), (-zoom, zoom))):
        _step(ax, hist, density(hist), color="black", lw=2, label="layer average")
        _step(ax, hist, density(hist, np.array([neuron]))[0], skip_empty=False, color="tab:red", lw=1.2,
              label=f"neuron {neuron}")
        ax.axvspan(-dead_threshold, dead_threshold, color="grey", alpha=0.15, label=f"±{dead_threshold:g}")
        ax.set_xlim(lo, hi)
        _log_y(ax)
        ax.set_xlabel("activation")
        ax.set_ylabel("density (log)")
        ax.legend(fontsize=7, framealpha=0.8)
    axes[1].set_title("zoom on zero", fontsize=9)
    share = f"{best['near_zero_fraction']:.1%}"
    if bool(best["dead"]):
        verdict = f": dead: {share} of values within ±{dead_threshold:g} (> {dead_fraction:.0%})"
    else:  # not "the most nearly dead": the largest share near zero is often a one-signed neuron resting at 0
        low, high = float(best["min"]), float(best["max"])
        sign = ", all below 0" if high < 0 else ", all above 0" if low > 0 else ""
        verdict = (f" (values {_number(low)} to {_number(high)}{sign})\nlargest share of values within "
                   f"±{dead_threshold:g}: {share}; no neuron is dead (> {dead_fraction:.0%})")
    axes[0].set_title(f"layer {layer}, {STATE_NAMES[state]}, neuron {neuron}{verdict}", fontsize=9)
    n_layers, n_states = table["layer"].nunique(), table["state"].nunique()
    fig.suptitle(figure_title(fig, f"{title}: {n_dead} of {len(table)} neurons dead ({n_layers} "
                              f"layer{'s' * (n_layers != 1)} × {n_states} state{'s' * (n_states != 1)} × "
                              f"{len(table) // max(1, n_layers * n_states)})", 10), fontsize=10)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)
    return {"layer": layer, "state": state, "neuron": neuron, "dead": bool(best["dead"]), "dead_count": n_dead}


def neuron_figures(histograms_path: str | os.PathLike, divergence_path: str | os.PathLike, top_k: int,
                   dead_threshold: float, dead_fraction: float, outputs: dict[str, tuple[str, str]],
                   dpi: int = 150) -> None:
    """Fig. 5.1, 5.2/5.5 and 5.6 of one model and text; ``outputs`` maps distributions/top_bottom/dead to (png, svg)."""
    attrs, hists = read_histograms(histograms_path)
    table = read_divergence(divergence_path)
    name = f"{attrs.get('model', '')}, text {attrs.get('text', '')}"
    check_divergence_fits(table, str(attrs.get("model")), str(attrs.get("text")), hists[0].counts.shape[0],
                          histograms_path)
    distributions_figure(hists, *outputs["distributions"], title=f"{name}: h and c distributions", dpi=dpi)
    top_bottom_figure(hists, table, top_k, *outputs["top_bottom"], title=f"{name}: neurons farthest from and "
                      "closest to the layer average (KL)", dpi=dpi)
    dead = dead_neuron_figure(hists, table, *outputs["dead"], title=name, dead_threshold=dead_threshold,
                              dead_fraction=dead_fraction, dpi=dpi)
    log.info("figures of %s drawn; dead neuron figure: %s", name, dead)


def mean_abs_table(divergence_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Per model, layer and state: mean |activation| over neurons (mean, median, quartiles) and dead neurons."""
    frames = [read_divergence(p) for p in divergence_paths]
    texts = {str(t) for f in frames for t in f["text"].unique()}
    if len(texts) != 1:
        raise HistogramError(f"divergence tables mix texts {sorted(texts)}; give the tables of one text")
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    g = table.groupby(["model", "dropout", "layer", "state"])
    out = g["mean_abs"].agg(mean_abs="mean", median_abs="median",
                            q25=lambda s: s.quantile(0.25), q75=lambda s: s.quantile(0.75))
    out["dead"] = g["dead"].sum()
    out["neurons"] = g.size()
    return out.reset_index().sort_values(["layer", "state", "dropout", "model"], key=models_in_order, kind="stable")


def mean_abs_vs_dropout_figure(summary: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, title: str,
                               dpi: int = 150) -> None:
    """Fig. 5.7: mean |activation| of every layer x state against dropout, one point per model; the layers of
    one state share the y scale, so they compare at a glance (h and c have scales of their own). One legend for the
    figure, below the panels (a legend inside a panel covered its quartile band): h's entries under the h column,
    c's under the c column."""
    pairs = sorted({(int(r.layer), str(r.state)) for r in summary.itertuples()})
    layers = sorted({p[0] for p in pairs})
    fig, axes = plt.subplots(len(layers), 2, figsize=(9, 3 * len(layers)), squeeze=False, sharey="col")
    legend: dict[str, tuple] = {}  # state -> its (band, points), for the figure's legend
    for (layer, state) in pairs:
        ax = axes[layers.index(layer), ("h", "c").index(state)]
        s = summary[(summary["layer"] == layer) & (summary["state"] == state)].sort_values(["dropout", "model"])
        by_d = s.groupby("dropout")
        band = ax.fill_between(by_d["q25"].mean().index, by_d["q25"].mean(), by_d["q75"].mean(), alpha=0.2,
                               color=STATE_COLOUR[state])
        (line,) = ax.plot(by_d["mean_abs"].mean().index, by_d["mean_abs"].mean(), color=STATE_COLOUR[state], lw=1)
        points = ax.scatter(s["dropout"], s["mean_abs"], color=STATE_COLOUR[state], s=18, zorder=3)
        legend.setdefault(state, (band, (line, points)))  # the line and its points: one entry, drawn as they are
        # the dead neurons (divergence.csv's `dead`): one count per dropout that has any, above its highest point
        # (its models' counts in the order of their names, "5, 12 dead", where several models share the dropout),
        # so that whether dropout kills neurons reads from the figure too; the ends' labels lean inwards
        ends = (s["dropout"].min(), s["dropout"].max())
        for d, models in s.groupby("dropout", sort=True):
            if (models["dead"] > 0).any():
                ha = "left" if d == ends[0] < ends[1] else "right" if d == ends[1] > ends[0] else "center"
                ax.annotate(", ".join(str(int(n)) for n in models["dead"]) + " dead", (d, models["mean_abs"].max()),
                            xytext=(0, 5), textcoords="offset points", ha=ha, va="bottom", fontsize=7,
                            color=STATE_COLOUR[state])
        dead = "" if (s["dead"] > 0).any() else " (no dead neuron)"
        ax.set_title(f"layer {layer}, {STATE_NAMES[state]}{dead}", fontsize=10)
        ax.set_xlabel("dropout")
        ax.set_ylabel("mean |activation|")
    for ax in axes[0]:  # from 0, once every layer is drawn (each column's scale reaches its largest value)
        ax.set_ylim(bottom=0)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    handles, labels = [], []  # column by column: h's two entries, then c's (ncol=2 fills the columns in turn)
    # several models of a dropout: the band is the mean of their quartiles (not those of all their neurons pooled)
    replicated = bool((summary.groupby(["dropout", "layer", "state"])["model"].nunique() > 1).any())
    quartiles = "quartiles; the models' mean" if replicated else "quartiles"
    means = "one point per model; the line: their mean" if replicated else "one point per model"
    for state in ("h", "c"):
        if state in legend:
            handles += list(legend[state])
            labels += [f"{state}: middle half of the neurons ({quartiles})",
                       f"{state}: mean over the neurons ({means})"]
    if handles:  # under the panels, outside every axes (save_figure's crop keeps it)
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=len(legend), fontsize=8,
                   frameon=False)
    save_figure(fig, png, svg, dpi=dpi)


def mean_abs_vs_dropout(divergence_paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike,
                        png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150) -> pd.DataFrame:
    from .atomic import write_table

    summary = mean_abs_table(divergence_paths)
    text = str(read_divergence(divergence_paths[0])["text"].iloc[0])
    write_table(summary, csv_path, "%.6g")
    models = summary["model"].nunique()
    mean_abs_vs_dropout_figure(summary, png, svg, title=f"Mean |activation| against dropout, text {text} "
                               f"({models} model{'s' * (models != 1)})", dpi=dpi)
    return summary
