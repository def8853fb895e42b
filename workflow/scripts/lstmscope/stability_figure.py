"""The figure of the clusters across t-SNE maps (:mod:`lstmscope.cluster_stability`'s table): a module of its own,
so that it reruns only its own job when edited."""
from __future__ import annotations

import os

import pandas as pd

from .cluster_figures import CHANCE_Z, CONTIGUITY_BASELINES, model_colours
from .figures import figure_title, plt, save_figure
from .points import view_order


START_NAMES = {"random": "random positions drawn with the seed", "pca": "the states' PCA"}  # a map's start
SEED_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # one per other seed, in the order of the seeds


def stability_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150) -> None:
    """The clusters of the maps of other t-SNE seeds (:func:`lstmscope.cluster_stability.seed_stability`'s rows): one
    column of panels per text and linkage; the top row the adjusted Rand index of each other seed's clusters against
    the reference map's (one scale for every column), the rows below each map's contiguity against each baseline of
    :data:`lstmscope.cluster_figures.CONTIGUITY_BASELINES` (the reference map's a bar, as in the contiguity figure,
    the other seeds' marks on it, one marker per seed; a column's baselines share one scale). Models side by side
    within each layer x state, one colour each."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = list(table.groupby(["text", "linkage"], sort=True))
    baselines = [b for b in CONTIGUITY_BASELINES if b[0] in table.columns]
    rows = 1 + len(baselines)
    reference = table["reference"].astype(bool)
    others_seeds = sorted(table.loc[~reference, "seed"].unique().tolist())
    marker = {seed: SEED_MARKERS[i % len(SEED_MARKERS)] for i, seed in enumerate(others_seeds)}
    models_all = list(dict.fromkeys(table["model"]))
    colours = model_colours(models_all)  # as in the contiguity figures
    edges = {m: tuple(0.6 * v for v in c[:3]) for m, c in colours.items()}  # darker: the light colours on white
    fig, axes = plt.subplots(rows, len(panels), figsize=(max(5, 1.2 * len(models_all) + 3) * len(panels),
                                                         0.8 + 3.2 * rows), squeeze=False)
    pca = "space" in table and (table["space"] == "pca").all()
    for column, ((text, linkage), group) in zip(axes.T, panels):
        views = sorted({(int(r.layer), r.state) for r in group.itertuples()}, key=view_order)
        models = [m for m in models_all if m in set(group["model"])]
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            colour, edge = colours[model], edges[model]
            mine = group[group["model"] == model]
            for i, view in enumerate(views):
                cell = mine[(mine["layer"] == view[0]) & (mine["state"] == view[1])]
                is_ref = cell["reference"].astype(bool)
                x = i + (k - (len(models) - 1) / 2) * width
                for ax, (ratio, z, _) in zip(column[1:], baselines):
                    if is_ref.any():
                        value, score = float(cell.loc[is_ref, ratio].iloc[0]), float(cell.loc[is_ref, z].iloc[0])
                        chance = abs(score) < CHANCE_Z  # hollow, as in the contiguity figure
                        ax.bar(x, value - 1, width * 0.9, bottom=1, facecolor="white" if chance else colour,
                               alpha=1 if chance else 0.6, edgecolor=edge, linewidth=1.0 if chance else 0.6)
                        # the bar's end, seen also where the bar is too short to (a ratio on the chance line)
                        ax.plot(x, value, "_", markersize=40 * width * 0.9, markeredgewidth=2, color=edge)
                for row in cell[~is_ref].itertuples():
                    column[0].plot(x, row.ari, marker[row.seed], markersize=5, color=colour, markeredgecolor=edge)
                    for ax, (ratio, _, _) in zip(column[1:], baselines):
                        ax.plot(x, getattr(row, ratio), marker[row.seed], markersize=5, markerfacecolor="white",
                                markeredgecolor=edge)
        what = " (the maps' own clusters; cluster.space: pca)" if pca else ""
        column[0].set_title(f"{text}: {linkage} linkage{what}\nagreement with the reference map's clusters", fontsize=9)
        column[0].set_ylabel("adjusted Rand index")
        column[0].axhline(1.0, color="0.6", linewidth=0.8)
        column[0].axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        for ax, (_, _, shuffled) in zip(column[1:], baselines):
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
            ax.use_sticky_edges = False  # bars all above chance: a margin below 1
            ax.set_ylabel("mean run length / baseline")
            ax.set_title(f"contiguity; baseline: {shuffled}", fontsize=9)
        for ax in column:
            ax.set_xticks(range(len(views)), [f"L{layer} {state}" for layer, state in views])
            ax.autoscale_view()
        low = min(ax.get_ylim()[0] for ax in column[1:])  # a column's baselines on one scale: equal bars, equal ratios
        high = max(ax.get_ylim()[1] for ax in column[1:])
        for ax in column[1:]:
            ax.set_ylim(low, high)
    low = min(min(ax.get_ylim()[0] for ax in axes[0]), -0.05)  # agreement: one scale for every linkage, 0 and 1 in it
    high = max(max(ax.get_ylim()[1] for ax in axes[0]), 1.05)
    for ax in axes[0]:
        ax.set_ylim(low, high)
    handles = ([Patch(facecolor=colours[m], edgecolor=edges[m], label=m) for m in models_all]
               + [Line2D([], [], marker=marker[s], linestyle="", color="0.35", label=f"seed {s}") for s in others_seeds])
    seeds = table.loc[reference, "seed"].unique().tolist()
    other_maps = (f"maps of seeds {', '.join(map(str, others_seeds))}" if len(others_seeds) > 1
                  else f"the map of seed {others_seeds[0]}" if others_seeds else "no other map")
    starts = table.loc[~reference, "start"].unique().tolist() if "start" in table else []
    start = f", started from {' and '.join(START_NAMES.get(s, s) for s in starts)}" if starts else ""
    fig.suptitle(figure_title(fig, f"Clusters across t-SNE maps: the reference map (seed {', '.join(map(str, seeds))}) "
                              f"against {other_maps} of the same states{start}, "
                              "each cut alike\nbars: the reference map's contiguity, hollow within 1.96 standard deviations of the "
                              "baseline; white marks: one other map each",
                              10), fontsize=10)
    fig.tight_layout()
    # below the panels, where no point or line can lie under it (in a panel it sat on the line at 1)
    fig.legend(handles=handles, fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0),
               ncol=min(len(handles), 6))  # rows of 6 at most: ten seeds' markers would widen the figure
    save_figure(fig, png, svg, dpi=dpi)
