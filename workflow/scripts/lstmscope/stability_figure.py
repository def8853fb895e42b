"""The figure of the clusters across t-SNE seeds (:mod:`lstmscope.cluster_stability`'s table): a module of its own,
so that it reruns only its own job when edited."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .cluster_figures import CONTIGUITY_BASELINES
from .figures import figure_title, plt, save_figure
from .points import view_order


def stability_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150) -> None:
    """The clusters of maps of other t-SNE seeds (:func:`lstmscope.cluster_stability.seed_stability`'s rows): one
    column of panels per text and linkage; the top row the adjusted Rand index of each other seed's clusters against
    the reference map's, the rows below each seed's contiguity against each baseline of :data:`lstmscope.cluster_figures.CONTIGUITY_BASELINES`
    (the reference seed's a bar, as in the contiguity figure, the other seeds' dots on it). Models side by side
    within each layer x state."""
    panels = list(table.groupby(["text", "linkage"], sort=True))
    baselines = [b for b in CONTIGUITY_BASELINES if b[0] in table.columns]
    rows = 1 + len(baselines)
    models_n = table["model"].nunique()
    fig, axes = plt.subplots(rows, len(panels), figsize=(max(5, 1.2 * models_n + 3) * len(panels), 0.6 + 3.2 * rows),
                             squeeze=False, sharey="row")
    cmap = plt.get_cmap("viridis")
    space = " of the PCA space's maps" if "space" in table and (table["space"] == "pca").all() else ""
    for column, ((text, linkage), group) in zip(axes.T, panels):
        views = sorted({(int(r.layer), r.state) for r in group.itertuples()}, key=view_order)
        models = list(dict.fromkeys(group["model"]))
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            colour = cmap(k / max(1, len(models) - 1))
            edge = tuple(0.6 * v for v in colour[:3])
            mine = group[group["model"] == model]
            offset = (k - (len(models) - 1) / 2) * width
            for i, view in enumerate(views):
                cell = mine[(mine["layer"] == view[0]) & (mine["state"] == view[1])]
                ref, others = cell[cell["reference"].astype(bool)], cell[~cell["reference"].astype(bool)]
                x = i + offset
                label = model if i == 0 else None
                column[0].plot(np.full(len(others), x), others["ari"], "o", markersize=5, color=colour,
                               markeredgecolor=edge, label=label)
                for ax, (ratio, _, _) in zip(column[1:], baselines):
                    if len(ref):
                        ax.bar(x, float(ref[ratio].iloc[0]) - 1, width * 0.9, bottom=1, color=colour, alpha=0.45)
                    ax.plot(np.full(len(others), x), others[ratio], "o", markersize=5, markerfacecolor="white",
                            markeredgecolor=edge)
        column[0].set_title(f"{text}: {linkage} linkage{space}\nagreement with the reference map's clusters",
                            fontsize=9)
        column[0].set_ylabel("adjusted Rand index")
        column[0].axhline(1.0, color="0.6", linewidth=0.8)
        column[0].axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        for ax, (_, _, shuffled) in zip(column[1:], baselines):
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
            ax.set_ylabel("mean run length / baseline")
            ax.set_title(f"contiguity; baseline: {shuffled}", fontsize=9)
        for ax in column:
            ax.set_xticks(range(len(views)), [f"L{layer} {state}" for layer, state in views])
        column[0].legend(fontsize=7, frameon=False, loc="best")  # one per column: the models' colours (as the dots and bars)
    seeds = table.loc[table["reference"].astype(bool), "seed"].unique().tolist()
    others = sorted(table.loc[~table["reference"].astype(bool), "seed"].unique().tolist())
    fig.suptitle(figure_title(fig, f"Clusters across t-SNE seeds: the reference map (seed {', '.join(map(str, seeds))})"
                              f" against maps of seeds {', '.join(map(str, others))} of the same states, each cut "
                              "alike\nbars: the reference map's contiguity; dots: one other seed each", 10),
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)
