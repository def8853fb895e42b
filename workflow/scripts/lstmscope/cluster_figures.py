"""Figures of the token embedding and its clusters (thesis Figs. 5.8-5.12) and of contiguity.

Every figure is saved as PNG and SVG (scatter points rasterised inside the SVG, so
that 18 000 points stay a small file). Clusters are numbered by size (1 = largest);
the 18 largest get their own colour and number, the rest are drawn grey. A number
sits on its cluster (on the member nearest the cluster's middle where it clears the numbers already drawn
and stays on the map), except where it would cover it: a cluster of fewer than ``SMALL``
points has each point ringed, one spread over less than ``SMALL_EXTENT`` of the map is
circled, and the number goes beside the rings or the circle: at the corner where it stays on the map, clear of
every other number, and hides the least of the other clusters (their points; a circle counts as ``SMALL``),
tied to that corner by a short line; numbers that find no such place are written together ("2-12")."""
from __future__ import annotations

import logging
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import offset_copy

from .colours import CLUSTER_PALETTE, OTHER_CLUSTERS, SMALL_CLUSTER
from .cluster_measures import BEYOND_Z, runs
from .figures import STATE_NAMES, figure_title, plt, save_figure, text_width_pt
from .wikitext import HEADING_SETTLE, passage_avoid
from .points import view_order
from .top_words import parse_top_words

log = logging.getLogger(__name__)

COLOURED = len(CLUSTER_PALETTE)
OTHER = OTHER_CLUSTERS
SMALL = SMALL_CLUSTER  # a numbered cluster with fewer points: each ringed, its number beside them
SMALL_EXTENT = 0.08  # a numbered cluster spread over less of the map (its larger side): circled, number beside
FRAGMENT_GAP = 0.05  # a cluster's points this far apart (share of the map's larger side) and more: two fragments
FRAGMENT_SHARE = 0.1  # a fragment (not the one numbered first) with this share of its cluster's points: numbered too


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in data units
CORNERS = ((1, 1), (-1, 1), (1, -1), (-1, -1))  # where a number goes beside its points: top right first
OFFSET_PT = 4.0  # between the points and their number
MARK_RISE_PT = 9.0  # a span's ▼ marker above its cluster's row (clusters along the text)
MARK_HALF_PT = 3.4  # half the marker's height
# one marker per model where lines of many models cross (viridis' neighbouring shades alone are hard to tell apart)
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")


def model_colours(models: Sequence[str]) -> dict[str, tuple]:
    """Each model's colour in the figures across models that tell them by colour (contiguity, contiguity by lag,
    seed stability, context use): viridis from its dark end to 0.8 of it, in the order given (by dropout, then
    replicate), so that a model has one colour in every such figure of the same models (the cluster figures, which
    show the embedded models; context use, which shows its own, agrees where those are the same or, as by default,
    a model is the first or last of both); not viridis' light end, a pale yellow line or band on white."""
    cmap = plt.get_cmap("viridis")
    return {model: cmap(0.8 * k / max(1, len(models) - 1)) for k, model in enumerate(models)}


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(a: Box, frame: Box) -> bool:
    return frame[0] <= a[0] and a[2] <= frame[2] and frame[1] <= a[1] and a[3] <= frame[3]


def label_size_pt(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height in points of a bold number label in its box (``round,pad=0.15``), with 1 pt to spare on
    each side (the glyphs' outlines are measured, the renderer snaps to pixels)."""
    pad = 2 * 0.15 * fontsize + 2.0
    return text_width_pt(text, fontsize, "bold") + pad, 1.2 * fontsize + pad


Disc = tuple[float, float, float, int]  # a circle drawn around a compact cluster: centre x, y, radius, its number


def covered(box: Box, numbers: Sequence[int], points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
            discs: Sequence[Disc] = ()) -> int:
    """What a label in ``box`` for the clusters ``numbers`` hides of the others: the ``points`` (x, y, cluster)
    under it, and ``SMALL`` for each circle of another cluster (``discs``) that it overlaps (its outline too)."""
    hidden = 0
    if points is not None:
        x, y, c = points
        under = (box[0] < x) & (x < box[2]) & (box[1] < y) & (y < box[3])
        hidden += int(np.count_nonzero(under & ~np.isin(c, numbers)))
    for cx, cy, r, k in discs:
        nx, ny = min(max(cx, box[0]), box[2]), min(max(cy, box[1]), box[3])  # the box's point nearest the centre
        if k not in numbers and (nx - cx) ** 2 + (ny - cy) ** 2 < r ** 2:
            hidden += SMALL
    return hidden


def place_besides(besides: Sequence[tuple[int, Box]], fixed: Sequence[Box], frame: Box, per_pt: float,
                  fontsize: float, points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  discs: Sequence[Disc] = ()) -> list[tuple[list[int], tuple[float, float], tuple[int, int]]]:
    """Where the numbers drawn beside their clusters go: ``besides`` holds (number, box of its points), ``fixed``
    the boxes of labels already on the map, ``frame`` the map, ``per_pt`` data units per point, ``points`` the
    map's (x, y, cluster) and ``discs`` its circles. Each number goes at the corner of its points (top right, top
    left, bottom right, bottom left) where its label stays on the map, clear of every other label, and hides the
    least of the other clusters (:func:`covered`; the first such corner in that order); numbers that find none
    beside a label of numbers are written with them, as one label ("2-12"). Returns (numbers, point of the
    corner, (x side, y side))."""
    groups: list[tuple[list[int], Box]] = [([k], box) for k, box in sorted(besides)]
    while True:
        placed: list[Box] = list(fixed)
        owner: list[int | None] = [None] * len(fixed)  # the group a placed box belongs to
        out = []
        for gi, (numbers, (x0, y0, x1, y1)) in enumerate(groups):
            w, h = (v * per_pt for v in label_size_pt(number_list(numbers), fontsize))
            off = (OFFSET_PT - 0.15 * fontsize - 1.0) * per_pt  # the text's offset, less its box's pad and 1 pt
            candidates = []
            for sx, sy in CORNERS:
                left = x1 + off if sx > 0 else x0 - off - w
                bottom = y1 + off if sy > 0 else y0 - off - h
                candidates.append(((left, bottom, left + w, bottom + h), (sx, sy)))
            free = [c for c in candidates if _inside(c[0], frame) and not any(_overlap(c[0], p) for p in placed)]
            if not free:
                clashes = [owner[i] for i, p in enumerate(placed) for c in candidates
                           if owner[i] is not None and _overlap(c[0], p)]
                if clashes:  # written with the numbers whose label is in the way; place everything again
                    gj = clashes[0]
                    (nj, bj), (ni, bi) = groups[gj], groups[gi]
                    merged = (sorted(set(nj + ni)), (min(bj[0], bi[0]), min(bj[1], bi[1]), max(bj[2], bi[2]),
                                                max(bj[3], bi[3])))
                    groups = [g for i, g in enumerate(groups) if i not in (gi, gj)] + [merged]
                    groups.sort(key=lambda g: g[0][0])
                    break
                on_map = [c for c in candidates if _inside(c[0], frame)]  # only a big cluster's number in the way
                free = on_map or candidates
            box, (sx, sy) = min(free, key=lambda c: covered(c[0], numbers, points, discs))  # the first of equals
            placed.append(box)
            owner.append(gi)
            out.append((numbers, (x1 if sx > 0 else x0, y1 if sy > 0 else y0), (sx, sy)))
        else:
            return out


def number_list(numbers: Sequence[int]) -> str:
    """``[2, 3, 4, 7, 9, 10]`` -> ``"2\u20134, 7, 9, 10"`` (an en dash joins runs of three or more)."""
    numbers = sorted(numbers)
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{r[0]}\u2013{r[-1]}" if len(r) >= 3 else ", ".join(map(str, r)) for r in runs]
    return ", ".join(parts)


def cluster_colours(clusters: np.ndarray) -> np.ndarray:
    """RGBA colour of each point: :data:`CLUSTER_PALETTE` for clusters 1-18, grey for the rest."""
    palette = np.array([plt.matplotlib.colors.to_rgba(c) for c in CLUSTER_PALETTE])
    clusters = np.asarray(clusters)
    colours = np.tile(np.array(plt.matplotlib.colors.to_rgba(OTHER)), (len(clusters), 1))
    coloured = (clusters >= 1) & (clusters <= COLOURED)
    colours[coloured] = palette[clusters[coloured] - 1]
    return colours


def point_size(n: int) -> float:
    return float(np.clip(6000.0 / max(n, 1), 0.3, 12.0))


def label_anchor(x: np.ndarray, y: np.ndarray, size: tuple[float, float] = (0.0, 0.0),
                 taken: Sequence[Box] = (), frame: Box | None = None) -> tuple[float, float]:
    """A member point near the cluster's middle (the member closest to the coordinate-wise median),
    so a label sits on the cluster even when the cluster is not convex. With the label's ``size`` (width,
    height in data units), the boxes of labels already ``taken`` and the map's ``frame``: the member closest
    to the middle where the label, centred on it, overlaps none of them and stays on the map (the middle one
    if there is none)."""
    mx, my = np.median(x), np.median(y)
    order = np.argsort((x - mx) ** 2 + (y - my) ** 2, kind="stable")
    if taken or frame is not None:
        w, h = size[0] / 2, size[1] / 2
        cx, cy = x[order], y[order]
        free = np.ones(len(order), dtype=bool)
        for x0, y0, x1, y1 in taken:
            free &= ~((cx - w < x1) & (x0 < cx + w) & (cy - h < y1) & (y0 < cy + h))
        if frame is not None:
            free &= (frame[0] <= cx - w) & (cx + w <= frame[2]) & (frame[1] <= cy - h) & (cy + h <= frame[3])
        if free.any():
            i = int(np.argmax(free))
            return float(cx[i]), float(cy[i])
    return float(x[order[0]]), float(y[order[0]])


def fragments(x: np.ndarray, y: np.ndarray, gap: float) -> list[np.ndarray]:
    """The points split into the groups that no two points nearer than ``gap`` join (the connected components of
    the graph of pairs within ``gap``: single linkage cut at ``gap``), as index arrays, the largest first (of equal
    sizes, the one with the first point first)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(x)
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(gap, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)  # numbered in the order of their first point
    return [np.flatnonzero(labels == k) for k in np.argsort(-np.bincount(labels), kind="stable")]


def draw_clusters(ax: "plt.Axes", table: pd.DataFrame, numbered: int = COLOURED, fontsize: float = 8) -> None:
    """Scatter of the points coloured by cluster, the ``numbered`` largest clusters numbered: a large one on the
    member nearest its middle, and again on each other fragment of it (:func:`fragments`, :data:`FRAGMENT_GAP`)
    holding :data:`FRAGMENT_SHARE` of its points (at least :data:`SMALL`), beside it where it is compact: t-SNE can
    draw one cluster in pieces."""
    x, y, c = table["x"].to_numpy(), table["y"].to_numpy(), table["cluster"].to_numpy()
    order = np.argsort(-c, kind="stable")  # small clusters first, the largest drawn on top
    size = point_size(len(x))
    extent = max(float(np.ptp(x)), float(np.ptp(y)), 1e-12)
    ax.scatter(x[order], y[order], c=cluster_colours(c[order]), s=size, linewidths=0, rasterized=True)
    # A translucent white box keeps a number readable on any colour (and stays text in the SVG).
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}
    # A number beside its circle (or rings) can lie nearer another cluster: a line ties it to its own.
    leader = {"arrowstyle": "-", "color": "black", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 0}
    # Data units per point: the axes keep equal aspect, so the map's larger side (with the margins) spans the box.
    fig = ax.figure
    pos = ax.get_position()
    margin = plt.rcParams["axes.xmargin"]
    per_pt = max(np.ptp(x) / (pos.width * fig.get_figwidth()), np.ptp(y) / (pos.height * fig.get_figheight())) \
        * (1 + 2 * margin) / 72.0
    per_pt = max(per_pt, 1e-12)  # a map whose points all coincide: its numbers still take room, so they merge
    frame = (float(x.min()) - margin * extent, float(y.min()) - margin * extent,
             float(x.max()) + margin * extent, float(y.max()) + margin * extent)
    besides: list[tuple[int, Box]] = []  # numbers drawn beside their points, and the box of those points
    fixed_boxes: list[Box] = []  # the boxes of the numbers drawn on their cluster
    discs: list[Disc] = []  # the circles around compact clusters
    for k in range(1, min(numbered, int(c.max())) + 1):
        members = c == k
        if not members.any():
            continue
        xs, ys = x[members], y[members]
        spread = max(float(np.ptp(xs)), float(np.ptp(ys)))
        if members.sum() < SMALL:  # a label on a few points would hide them: ring each, number beside them
            ax.scatter(xs, ys, s=max(6 * size, 20), facecolors="none", edgecolors="black", linewidths=0.6, zorder=3)
            besides.append((k, (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))))
        elif spread < SMALL_EXTENT * extent:  # a compact clump: one circle around it, number beside the circle
            cx, cy = (xs.max() + xs.min()) / 2, (ys.max() + ys.min()) / 2
            r = float(np.hypot(xs - cx, ys - cy).max()) + 0.01 * extent
            ax.add_patch(plt.matplotlib.patches.Circle((cx, cy), r, fill=False, edgecolor="black", linewidth=0.7,
                                                       zorder=3))
            discs.append((float(cx), float(cy), r, k))
            d = r * 0.71
            besides.append((k, (float(cx - d), float(cy - d), float(cx + d), float(cy + d))))
        else:  # on the member nearest the middle whose label clears the numbers already on the map
            w, h = (v * per_pt for v in label_size_pt(str(k), fontsize))
            first = label_anchor(xs, ys, (w, h), fixed_boxes, frame)
            parts = [part for part in fragments(xs, ys, FRAGMENT_GAP * extent)
                     if len(part) >= max(SMALL, FRAGMENT_SHARE * len(xs))
                     and not np.any((xs[part] == first[0]) & (ys[part] == first[1]))]  # not the one numbered first
            for part in [None, *parts]:
                if part is not None and max(np.ptp(xs[part]), np.ptp(ys[part])) < SMALL_EXTENT * extent:
                    # a compact piece under its number would be hidden: the number goes beside it
                    besides.append((k, (float(xs[part].min()), float(ys[part].min()), float(xs[part].max()),
                                        float(ys[part].max()))))
                    continue
                fx, fy = first if part is None else label_anchor(xs[part], ys[part], (w, h), fixed_boxes, frame)
                ax.text(fx, fy, str(k), fontsize=fontsize, fontweight="bold", ha="center", va="center", bbox=box)
                fixed_boxes.append((fx - w / 2, fy - h / 2, fx + w / 2, fy + h / 2))
    for numbers, xy, (sx, sy) in place_besides(besides, fixed_boxes, frame, per_pt, fontsize, (x, y, c), discs):
        # no line from numbers written together: their corner is that of the box around all their clusters
        ax.annotate(number_list(numbers), xy, xytext=(OFFSET_PT * sx, OFFSET_PT * sy), textcoords="offset points",
                    fontsize=fontsize, fontweight="bold", ha="left" if sx > 0 else "right",
                    va="bottom" if sy > 0 else "top", bbox=box, zorder=4,
                    arrowprops=leader if len(numbers) == 1 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")


def _view(layer: int, state: str) -> str:
    return f"layer {layer}, {STATE_NAMES.get(state, state)}"


def ward_vs_single_figure(tables: Mapping[str, pd.DataFrame], title: str, png: str | os.PathLike,
                          svg: str | os.PathLike, dpi: int = 150) -> None:
    """Fig. 5.8: the same embedding clustered with ward (left) and single (right) linkage."""
    order = [k for k in ("ward", "single") if k in tables] + [k for k in tables if k not in ("ward", "single")]
    fig, axes = plt.subplots(1, len(order), figsize=(6 * len(order), 6), squeeze=False)
    for ax, linkage in zip(axes[0], order):
        table = tables[linkage]
        draw_clusters(ax, table)
        sizes = table["cluster"].value_counts()
        n = len(sizes)
        ax.set_title(f"{linkage} linkage: {n} cluster{'s' * (n != 1)}, largest {sizes.max() / len(table):.0%} of tokens",
                     fontsize=10)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


def numbered_clusters_figure(table: pd.DataFrame, title: str, png: str | os.PathLike, svg: str | os.PathLike,
                             dpi: int = 150) -> None:
    """Figs. 5.9/5.10: one clustering with its clusters numbered (1 = largest)."""
    fig, ax = plt.subplots(figsize=(8, 8))
    draw_clusters(ax, table, fontsize=10)
    ax.set_title(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


def highlight_word_figure(embeddings: Mapping[tuple[int, str], pd.DataFrame], word: str, title: str,
                          png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150) -> None:
    """Fig. 5.11: every token grey, the tokens equal to ``word`` red; one panel per layer x state."""
    keys = sorted(embeddings, key=view_order)
    cols = min(2, len(keys))
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 5.5 * rows), squeeze=False)
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    hits = 0
    for ax, key in zip(axes.ravel(), keys):
        table = embeddings[key]
        hit = (table["word"] == word).to_numpy()
        hits += int(hit.sum())
        x, y = table["x"].to_numpy(), table["y"].to_numpy()
        ax.scatter(x[~hit], y[~hit], c=OTHER, s=point_size(len(x)), linewidths=0, rasterized=True)
        ax.scatter(x[hit], y[hit], c="#d62728", s=max(4.0, 2 * point_size(len(x))), linewidths=0,
                   rasterized=True)
        ax.set_title(f"{_view(*key)}: {int(hit.sum())} of {len(x)} tokens are {word!r}", fontsize=10,
                     parse_math=False)  # a word is drawn as it is: "$" does not start a formula
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)
    if not hits:  # a typo draws grey points only
        log.warning("figures.highlight_word %r is none of the %d tokens embedded (a word is matched as it is, case "
                    "included): the figure highlights nothing", word, len(embeddings[keys[0]]))


def tokens(n: int) -> str:
    return f"{n} token" if n == 1 else f"{n} tokens"


def _unbroken_ellipsis(text: str) -> str:
    """A span cut short ends in " …": the ellipsis bound to the word before it (a no-break space, which textwrap
    does not break at), so that a wrapped line never leaves it, and the closing quote, alone on the next."""
    return text[:-2] + "\u00a0…" if text.endswith(" …") else text


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True)) or " "


def _top_word(top_words: str) -> str:
    """'was (39) · the (30)' -> 'most frequent word “was”, 39×' (the word quoted: it may be a comma)."""
    word, count = parse_top_words(top_words)[0]
    return f"most frequent word \u201c{word}\u201d, {count}\u00d7"


def outside_spans(table: pd.DataFrame, clusters: pd.DataFrame, avoid: np.ndarray | None,
                  span_words: int = 12) -> pd.DataFrame:
    """``clusters`` (:func:`lstmscope.cluster_measures.cluster_table` of ``table``) with each cluster's longest span
    (``longest_span_start``, ``_length``, ``_text``) found again among the runs of one cluster that hold no token of
    ``avoid`` (a mask over ``table`` in text order; ``None``: the table's spans as they are). A cluster whose every
    token is avoided has no span: length 0, start -1, text ""."""
    if avoid is None:
        return clusters
    table = table.sort_values("position", kind="stable").reset_index(drop=True)
    avoid = np.asarray(avoid, dtype=bool)
    if len(avoid) != len(table):
        raise ValueError(f"{len(avoid)} tokens to avoid marked but {len(table)} tokens in the table")
    words = table["word"].astype(str).tolist()
    positions = table["position"].to_numpy()
    labels = np.where(avoid, 0, table["cluster"].to_numpy())  # clusters are numbered from 1: 0 breaks every run
    starts, lengths, run_labels = runs(labels)
    out = clusters.copy()
    found = []
    for k in out["cluster"]:
        mine = np.flatnonzero(run_labels == k)
        if not len(mine):
            found.append((-1, 0, ""))
            continue
        best = mine[np.argmax(lengths[mine])]  # the first longest
        s, length = int(starts[best]), int(lengths[best])
        text = " ".join(words[s:s + min(length, span_words)]) + (" \u2026" if length > span_words else "")
        found.append((int(positions[s]), length, text))
    out["longest_span_start"] = [f[0] for f in found]
    out["longest_span_length"] = [f[1] for f in found]
    out["longest_span_text"] = [f[2] for f in found]
    return out


AVOIDED_COLOUR = "0.88"  # the tokens no span may hold, shaded behind the marks


def position_figure(table: pd.DataFrame, clusters: pd.DataFrame, title: str, spans: int,
                    png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150, passage: str = "prose") -> None:
    """Fig. 5.12: each token's cluster against its text position; below, the ``spans`` longest spans of the text
    that stay in one cluster, each cluster's longest (the longest first; ties: the lower cluster number). With
    ``passage`` ``prose`` (``heatmap.passage``, as the text heatmaps) a span holds none of the tokens
    :func:`lstmscope.wikitext.passage_avoid` marks: section headings, the blank lines around them and the
    :data:`~lstmscope.wikitext.HEADING_SETTLE` tokens after them (shaded grey); ``active``: any tokens."""
    table = table.sort_values("position", kind="stable").reset_index(drop=True)
    pos, c = table["position"].to_numpy(), table["cluster"].to_numpy()
    avoid = passage_avoid(table["word"].astype(str).tolist(), passage)
    if avoid is not None and not avoid.any():
        avoid = None  # a text without headings: nothing to leave out, nothing to say
    clusters = outside_spans(table, clusters, avoid)
    shown = clusters[clusters["longest_span_length"] > 0]
    shown = shown.sort_values(["longest_span_length", "cluster"], ascending=[False, True], kind="stable").head(spans)
    span_lines = [f"\u25bc cluster {r.cluster} ({tokens(r.size)}; {_top_word(r.top_words)}): longest span "
                  f"{tokens(r.longest_span_length)} from position {r.longest_span_start}: "
                  f"\u201c{_unbroken_ellipsis(r.longest_span_text)}\u201d"
                  for r in shown.itertuples()]
    if avoid is not None:
        note = (f"Spans leave out the section headings, the blank lines around them and the {HEADING_SETTLE} tokens "
                f"after each (shaded grey; heatmap.passage: {passage}).")
        if not len(shown):
            note += " No span of one cluster lies outside them."
        span_lines.insert(0, note)
    wrapped = [_wrap(line, 160) for line in span_lines]
    text_lines = max(0, sum(w.count("\n") + 1 for w in wrapped) + len(wrapped) - 1)
    n_clusters = int(c.max())
    fig = plt.figure(figsize=(12, 3.5 + 0.12 * min(n_clusters, 40) + 0.17 * text_lines))
    grid = fig.add_gridspec(2, 1, height_ratios=[3.5 + 0.12 * min(n_clusters, 40), 0.17 * text_lines + 0.2])
    ax = fig.add_subplot(grid[0])
    if avoid is not None:  # each stretch of avoided tokens, behind everything
        starts, lengths, flags = runs(avoid)
        for s, length in zip(starts[flags], lengths[flags]):
            ax.axvspan(pos[s] - 0.5, pos[s + length - 1] + 0.5, color=AVOIDED_COLOUR, linewidth=0, zorder=0)
    ax.scatter(pos, c, c=cluster_colours(c), s=6 if len(pos) < 5000 else 2, marker="|", linewidths=0.8,
               rasterized=True)
    ax.set_xlabel("position in the text (tokens)")
    ax.set_ylabel("cluster (1 = largest)")
    # room above row 1 for the marker of a span of cluster 1: MARK_RISE_PT above the row and half the marker's
    # height, in rows (with many clusters a row is a few points high; the axes are about 85 % of their grid cell)
    row_pt = 0.85 * ax.get_position().height * fig.get_figheight() * 72 / (n_clusters + 0.5)
    ax.set_ylim(n_clusters + 0.5, 1 - max(0.9, (MARK_RISE_PT + MARK_HALF_PT + 1) / row_pt))
    if n_clusters <= 40:
        ax.set_yticks(range(1, n_clusters + 1))
        ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(pos.min() - 0.5, pos.max() + 0.5)
    for r in shown.itertuples():
        colour = cluster_colours(np.array([r.cluster]))[0]
        ax.axvspan(r.longest_span_start - 0.5, r.longest_span_start + r.longest_span_length - 0.5,
                   color=colour, alpha=0.25, linewidth=0)
        # a span of a few tokens is a hairline on an axis of thousands: a marker above its row finds it
        ax.scatter([r.longest_span_start + (r.longest_span_length - 1) / 2], [r.cluster], marker="v",
                   s=(2 * MARK_HALF_PT) ** 2, color=colour, edgecolors="black", linewidths=0.5, zorder=4, clip_on=False,
                   transform=offset_copy(ax.transData, fig=fig, y=MARK_RISE_PT, units="points"))
    ax.set_title(figure_title(fig, title, 11), fontsize=11)
    tx = fig.add_subplot(grid[1])
    tx.axis("off")
    tx.text(0, 1, "\n\n".join(wrapped), va="top", ha="left", fontsize=8, transform=tx.transAxes, wrap=False,
            parse_math=False)  # the text's words as they are: "$ 3 million ... $ 2" is not a formula
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


CHANCE_Z = BEYOND_Z  # a contiguity this close to the shuffled labels' (in their standard deviations) is drawn hollow


#: The rows of the contiguity figure: (ratio column, z column, what the labels were shuffled as).
CONTIGUITY_BASELINES = (("contiguity_ratio", "contiguity_z", "labels shuffled"),
                        ("word_contiguity_ratio", "word_contiguity_z", "each word's labels shuffled among its tokens"))


SHORT_BAR = 0.015  # a contiguity bar shorter than this share of its panel's height also gets a dot at its end


def contiguity_figure(measures: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike,
                      dpi: int = 150) -> None:
    """Contiguity ratio (observed / shuffled mean run length) per layer x state, one bar per model, one panel per
    linkage (and text); one row of panels per baseline (:data:`CONTIGUITY_BASELINES`: the labels shuffled, and each
    word's labels shuffled among its own tokens). Bars grow from 1 (chance), hollow within 1.96 of the
    baseline's standard deviations."""
    panels = list(measures.groupby(["text", "linkage"], sort=True))
    baselines = [b for b in CONTIGUITY_BASELINES if b[0] in measures.columns]
    # a column's panels (one text and linkage, against each baseline) share their scale: equal bars, equal ratios
    fig, axes = plt.subplots(len(baselines), len(panels),
                             figsize=(max(5, 1.2 * measures["model"].nunique() + 3) * len(panels),
                                      0.5 + 3.6 * len(baselines)), squeeze=False, sharey="col")
    bar_ends = {}  # axes -> (x, value, hollow, colour, edge) of every bar, for the dots of the ones too short to see
    colours = model_colours(list(dict.fromkeys(measures["model"])))  # every panel's, a panel lacking a model too
    for row, (ratio_col, z_col, shuffled) in zip(axes, baselines):
        for ax, ((text, linkage), group) in zip(row, panels):
            views = sorted({(int(r.layer), r.state) for r in group.itertuples()}, key=view_order)
            models = list(dict.fromkeys(group["model"]))  # as the table lists them: by dropout, then replicate
            width = 0.8 / len(models)
            ends = bar_ends.setdefault(ax, [])
            for k, model in enumerate(models):
                rows = group[group.model == model].set_index(["layer", "state"])
                values = np.array([rows.loc[v, ratio_col] if v in rows.index else np.nan for v in views])
                z = np.array([rows.loc[v, z_col] if v in rows.index and z_col in rows else np.nan for v in views])
                chance = np.abs(z) < CHANCE_Z  # within the baseline's range: hollow
                x = np.arange(len(views)) + (k - (len(models) - 1) / 2) * width
                one = np.zeros(len(views), bool)
                if "clusters" in rows:  # one cluster: a single run, the baseline's too; a bar of height 0, named
                    for i, (xi, v) in enumerate(zip(x, views)):
                        if v in rows.index and int(rows.loc[v, "clusters"]) == 1:
                            one[i] = True
                            ax.text(xi, 1, " 1 cluster", rotation=90, ha="center", va="bottom", fontsize=7,
                                    color="0.3")
                colour = colours[model]
                edge = tuple(0.6 * v for v in colour[:3])  # a hollow bar's: darker, the light colours on white
                ends += [(xi, vi, bool(c), colour, edge) for xi, vi, c, o in zip(x, values, chance, one)
                         if np.isfinite(vi) and not o]
                if (~chance).any():
                    ax.bar(x[~chance], values[~chance] - 1, width, bottom=1, color=colour, label=model)
                if chance.any():  # labelled only where the model has no filled bar (one legend entry per model)
                    ax.bar(x[chance], values[chance] - 1, width, bottom=1, facecolor="white", linewidth=1.2,
                           edgecolor=edge, label=None if (~chance).any() else model)
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
            ax.use_sticky_edges = False  # bars all above chance: a margin below 1, or its line merges with the frame
            ax.set_xticks(range(len(views)), [f"L{layer} {state}" for layer, state in views])
            ax.set_ylabel("mean run length / baseline")
            space = " of the PCA space" if "space" in group and (group["space"] == "pca").all() else ""
            ax.set_title(f"{text}: {linkage} linkage{space}\nbaseline: {shuffled}", fontsize=9)
            ax.legend(fontsize=7, frameon=False)
    for column in axes.T:  # the scale of every bar of the column; then a dot ends each bar too short to see on it
        for ax in column:
            ax.autoscale_view()
        low, high = column[0].get_ylim()
        for ax in column:
            for xi, vi, hollow, colour, edge in bar_ends[ax]:
                if abs(vi - 1) < SHORT_BAR * (high - low):
                    ax.plot(xi, vi, "o", markersize=4, zorder=3, markerfacecolor="white" if hollow else colour,
                            markeredgecolor=edge if hollow else colour)
        column[0].set_ylim(low, high)
    fig.suptitle(figure_title(fig, "Contiguity of the clusters along the text: mean run length of a cluster label over "
                              "that of a baseline (1 = no more contiguous than it)\nhollow: within 1.96 standard "
                              "deviations of the baseline's run length; a dot ends a bar too short to see (hollow or "
                              "filled as the bar)", 10), fontsize=10)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


def contiguity_lag_figure(lags: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike,
                          dpi: int = 150) -> None:
    """How far along the text the clusters reach (:func:`cluster_measures.contiguity_by_lag`): agreement beyond
    chance of the clusters of tokens ``lag`` apart, against the lag (log scale), one panel per layer x state
    (columns) and text x linkage (rows, which share their scale), one colour per model; solid: the clusters,
    dashed with a band of 1.96 standard deviations: each word's labels shuffled among its tokens (what the words
    alone make of it). 0 is chance (labels shuffled); a view of one cluster has no line (no chance to beat) and
    says so."""
    rows = list(lags.groupby(["text", "linkage"], sort=True))
    views = sorted({(int(layer), state) for layer, state in zip(lags["layer"], lags["state"])}, key=view_order)
    models = list(dict.fromkeys(lags["model"]))  # as the table lists them: by dropout, then replicate
    colours = model_colours(models)
    fig, axes = plt.subplots(len(rows), len(views), figsize=(3.2 * len(views) + 1.0, 0.8 + 2.9 * len(rows)),
                             squeeze=False, sharey="row", sharex=True)
    for r, (row, ((text, linkage), group)) in enumerate(zip(axes, rows)):
        space = " of the PCA space" if (group["space"] == "pca").all() else ""
        for ax, (layer, state) in zip(row, views):
            view = group[(group["layer"] == layer) & (group["state"] == state)]
            one = []  # models whose clusters of this view are one: no chance to beat, no line, named instead
            for model in models:
                line = view[view["model"] == model].sort_values("lag")
                if line.empty:
                    continue
                if not np.isfinite(line["kappa"]).any():
                    one.append(model)
                    continue
                lag, colour = line["lag"].to_numpy(), colours[model]
                scale = 1.0 - line["chance"].to_numpy()  # the word baseline's spread in units of agreement
                band = CHANCE_Z * line["word_same_sd"].to_numpy() / scale
                word = line["word_kappa"].to_numpy()
                marker = "o" if len(lag) < 10 else None  # a line of one lag is a point, drawn only as a marker
                ax.fill_between(lag, word - band, word + band, color=colour, alpha=0.15, linewidth=0)
                ax.plot(lag, word, color=colour, linewidth=1.0, linestyle="--", marker=marker, markersize=3)
                ax.plot(lag, line["kappa"].to_numpy(), color=colour, linewidth=1.6, label=model, marker=marker,
                        markersize=4)
            ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
            if one:
                ax.text(0.98, 0.03, f"1 cluster, no line: {', '.join(one)}", transform=ax.transAxes, ha="right",
                        va="bottom", fontsize=7, color="0.3", zorder=4,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})  # over lines
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1, 10, 100: lags, not powers
            ax.set_title(f"{text}, {linkage}{space}: L{layer} {state}", fontsize=9)
            if ax is row[0]:
                ax.set_ylabel("same cluster, beyond chance")
            if r == len(rows) - 1:
                ax.set_xlabel("tokens apart (lag)")
    handles = [plt.Line2D([], [], color=colours[m], linewidth=1.6, label=m) for m in models]
    handles += [plt.Line2D([], [], color="0.4", linewidth=1.6, label="clusters"),
                plt.Line2D([], [], color="0.4", linewidth=1.0, linestyle="--",
                           label=f"each word's labels shuffled (± {CHANCE_Z:g} sd)")]
    axes[0, -1].legend(handles=handles, fontsize=7, frameon=False, loc="upper right")
    fig.suptitle(figure_title(fig, "How far the clusters reach along the text: the share of token pairs that many "
                              "tokens apart in one cluster, as agreement beyond chance ((share - chance) / (1 - "
                              "chance); 0 = labels shuffled, 1 = every pair in one cluster)", 10), fontsize=10)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)
