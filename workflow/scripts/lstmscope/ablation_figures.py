"""Figures of the ablations: what each removed neuron cost, on which words, and how that changes with dropout.

- ``effects``: per layer, the perplexity change of every ablation of one model: the top-KL
  neurons one at a time (labelled with their index) against the random ones, and each
  group removed together.
- ``heatmap``: per layer, the top-KL neuron whose removal changed the perplexity most (up or
  down), drawn over the passage
  where its effect is largest: each word's background is log p(word) intact minus without
  the neuron (red: the neuron helped predict the word, blue: it hindered).
- ``vs_dropout``: per layer, the mean perplexity change of a top-KL neuron against a random
  one, and of each group, for every model against its dropout (the table beside it too).

:func:`removal_effects` hands each removal's effect on the words of a text to the neuron
explorer (single neurons and groups) and to ``lstmscope-heatmap --ablation`` (single neurons).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import colors
from matplotlib.lines import Line2D

from .ablation_file import AblationError, AblationFile, check_table_matches, read_ablation, read_ablation_table
from .ablation_table import INTERVAL
from .atomic import write_table
from .figures import figure_title, plt, save_figure
from .heatmap import TextBlock, best_window, draw_blocks, shown, symmetric_norm
from .order import models_in_order
from .wikitext import check_passage, passage_avoid

log = logging.getLogger(__name__)

# column of each group in the effects figure, its colour and marker
GROUP_STYLE = {"top": ("top-KL\none at a time", "tab:red", "o"),
               "random": ("random\none at a time", "tab:blue", "o"),
               "top all": ("top-KL\nall together", "tab:red", "D"),
               "random all": ("random\nall together", "tab:blue", "D")}
ORDER = ["top", "random", "top all", "random all"]


def group_label(group: str, state: str | None = None) -> str:
    """A group's name as the figures write it (GROUP_STYLE's), the top-KL groups naming the state whose KL ranked
    them (ablation.state; the ablation file's ``state``) where it is given."""
    name = GROUP_STYLE[group][0]
    return name.replace("top-KL", f"top-KL of {state}") if state else name


LABELLED = 6  # top neurons labelled at most per layer (those whose removal changes the perplexity most)
LABELLED_RANDOM = 6  # random ones, after them
SPREAD = 0.36  # half the width over which the neurons removed one at a time are set out (the groups are 1 apart)
MARKER_PT = 30  # area of a point, pt^2
PANELS_PER_ROW = 4  # layers' panels in a row of a figure; more layers wrap to further rows


def layer_panels(n: int, width: float, height: float, extra: float) -> tuple[plt.Figure, list, list]:
    """A figure of ``n`` panels (one per layer), at most :data:`PANELS_PER_ROW` to a row, each ``width`` by ``height``
    inches plus ``extra`` inches of width, one y axis shared by all: the figure, its panels in order, and the panels
    that start a row (which carry the y axis's label)."""
    cols = min(n, PANELS_PER_ROW)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + extra, height * rows), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:  # the last row's empty places
        ax.remove()
    return fig, list(axes.flat[:n]), list(axes[:, 0])


def place_labels(ax, candidates: Sequence[tuple[float, float, str]], fontsize: float = 7) -> None:
    """Label points with text, in the order given (most important first): each label goes just above the top of
    its point's interval line (or the point), just below its bottom, right or left of the point, or one line
    further above or below, the first of these where its box meets no point and no interval line of ``ax``, no
    label placed before and no edge of the panel; a label that fits nowhere is left out. Call it when the panel's
    limits and place are final."""
    from matplotlib.collections import LineCollection, PathCollection

    px = ax.figure.dpi / 72
    points = np.vstack([ax.transData.transform(c.get_offsets()) for c in ax.collections
                        if isinstance(c, PathCollection)])
    lines = [ax.transData.transform(seg) for c in ax.collections if isinstance(c, LineCollection)
             for seg in c.get_segments() if len(seg) == 2]
    spans = np.array([(seg[0][0], min(seg[0][1], seg[1][1]), max(seg[0][1], seg[1][1])) for seg in lines]
                     ).reshape(-1, 3)  # x, bottom, top of each interval line, in pixels
    reach = (np.sqrt(MARKER_PT) / 2 + 1) * px  # a point's radius, and a little air
    frame = ax.get_window_extent()
    placed: list[tuple[float, float, float, float]] = []
    gap, h = 4 * px, 1.25 * fontsize * px
    for x, y, text in candidates:
        cx, cy = ax.transData.transform((x, y))
        w = 0.65 * fontsize * len(text) * px
        own = spans[np.abs(spans[:, 0] - cx) < 0.5] if len(spans) else spans
        top = max([cy, *own[:, 2]]) if len(own) else cy
        bottom = min([cy, *own[:, 1]]) if len(own) else cy
        side_x = reach + 2 * px
        boxes = [(cx - w / 2, top + gap), (cx - w / 2, bottom - gap - h), (cx + side_x, cy - h / 2),
                 (cx - side_x - w, cy - h / 2), (cx - w / 2, top + gap + h), (cx - w / 2, bottom - gap - 2 * h)]
        for x0, y0 in boxes:
            box = (x0, y0, x0 + w, y0 + h)
            on_point = ((points[:, 0] > box[0] - reach) & (points[:, 0] < box[2] + reach)
                        & (points[:, 1] > box[1] - reach) & (points[:, 1] < box[3] + reach)).any()
            on_line = bool(len(spans)) and ((spans[:, 0] > box[0] - px) & (spans[:, 0] < box[2] + px)
                                            & (spans[:, 2] > box[1]) & (spans[:, 1] < box[3])).any()
            on_label = any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not on_point and not on_line and not on_label:
                placed.append(box)
                ax.annotate(text, (x, y), xytext=(((box[0] + box[2]) / 2 - cx) / px, ((box[1] + box[3]) / 2 - cy) / px),
                            textcoords="offset points", fontsize=fontsize, ha="center", va="center")
                break


def change_intervals(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per ablation, the 95 % interval of its perplexity change; NaN where there is none (too few words read, a
    table without the columns)."""
    if not set(INTERVAL) <= set(rows.columns):
        return np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    return rows[INTERVAL[0]].to_numpy(float), rows[INTERVAL[1]].to_numpy(float)


def clear_of_zero(rows: pd.DataFrame) -> np.ndarray:
    """Per ablation, whether the 95 % interval of its perplexity change leaves out 0; not where there is no
    interval: nothing says the change differs from 0."""
    low, high = change_intervals(rows)
    return (low > 0) | (high < 0)


#: How an ablation file's units were removed (its ``method`` attribute; files without one held them at 0).
REMOVAL = {"mean": "h held at its mean over the words read", "zero": "h held at 0"}


def removal_phrase(method: str) -> str:
    """How a unit removed by ``method`` (an ablation file's :attr:`AblationFile.method`) was removed, in words."""
    return REMOVAL.get(method, method)


def effects_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150,
                   n_tokens: int | None = None, method: str | None = None, state: str | None = None) -> None:
    """Perplexity change of every ablation of one model and text (its first ``n_tokens``), one panel per layer;
    ``method`` (the ablation file's) is named in the title, ``state`` (whose KL ranked the top neurons) in the top
    groups' labels."""
    layers = sorted(table["layer"].unique())
    model, text = table["model"].iloc[0], table["text"].iloc[0]
    # 4.2 in a panel, plus room for the y axis's label (which the first panel alone would give up)
    fig, panels, first = layer_panels(len(layers), 4.2, 3.8, 0.8)
    labels = []  # (axes, [(x, y, text)], most changed first)
    for ax, layer in zip(panels, layers):
        sub = table[table["layer"] == layer]
        groups = [g for g in ORDER if (sub["group"] == g).any()]
        panel: list[tuple[float, float, str]] = []  # top neurons first (ORDER), then random ones
        labels.append((ax, panel))
        for x, group in enumerate(groups):
            rows = sub[sub["group"] == group]
            _, colour, marker = GROUP_STYLE[group]
            y = rows["perplexity_change_pct"].to_numpy()
            xs = x + (np.linspace(-SPREAD, SPREAD, len(y)) if len(y) > 1 else np.zeros(1))  # groups together: 1 point
            clear = clear_of_zero(rows)
            low, high = change_intervals(rows)
            known = np.isfinite(low) & np.isfinite(high)
            if known.any():  # each change's 95 % interval over the text, a thin line through its point
                ax.vlines(xs[known], low[known], high[known], color=colour, lw=0.8, alpha=0.6, zorder=2)
            ax.scatter(xs[clear], y[clear], color=colour, marker=marker, s=MARKER_PT, zorder=3)
            ax.scatter(xs[~clear], y[~clear], facecolors="white", edgecolors=colour, marker=marker, s=MARKER_PT,
                       linewidths=1.2, zorder=3)
            if group in ("top", "random"):  # the neurons' indices, placed once the panels are laid out
                most = np.argsort(-np.abs(np.nan_to_num(y)), kind="stable")[:LABELLED if group == "top" else
                                                                            LABELLED_RANDOM]
                panel.extend((float(xs[i]), float(y[i]), str(rows["neurons"].iloc[i])) for i in most)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.margins(y=0.12)  # room for the labels of the highest and lowest points
        ax.set_xticks(range(len(groups)), [group_label(g, state) for g in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(f"layer {layer}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in first:
        ax.set_ylabel("perplexity change (%)\nwithout the neuron(s)")
    base = float(table["intact_perplexity"].iloc[0])
    over = f" over its first {n_tokens} tokens, read as one stream" if n_tokens else ""
    unknown = np.isnan(np.concatenate(change_intervals(table))).any()
    how = f"{removal_phrase(method)}, " if method else ""
    fig.suptitle(figure_title(fig, f"{model}, text {text}: neurons removed ({how}intact perplexity {base:.1f}{over})\n"
                              "lines: the change's 95 % interval over the text; hollow: it includes 0"
                              + (" or there is none (too few words)" if unknown else ""), 11), fontsize=11)
    fig.tight_layout()
    for ax, candidates in labels:
        place_labels(ax, candidates)
    save_figure(fig, png, svg, dpi=dpi)


EFFECT_CAPTION = "effect on each word = log p(word) intact − without (red: helped predict it; blue: hindered)"


def effect_block(head: str, words: Sequence[str], effect: np.ndarray, start: int, stop: int,
                 norm: colors.Normalize | None = None) -> TextBlock:
    """An ablation's effect on the words [start, stop) as a heatmap block, on a scale centred on zero (its own,
    or ``norm``: one scale shared by the blocks of a figure)."""
    values = effect[start:stop]
    return TextBlock(f"{head}, tokens {start}-{stop - 1}", list(words[start:stop]), values,
                     symmetric_norm(values) if norm is None else norm, "effect (nats)")


@dataclass(frozen=True)
class Removal:
    """Neurons removed together (one, or a whole group): their group and the effect on every word of the text."""

    group: str                 # top, random, top all or random all
    neurons: tuple[int, ...]   # the neurons removed (0-based)
    effect: np.ndarray         # (T,) nats; NaN at the first word and after the first ``tokens`` words
    tokens: int                # the words the ablation read
    method: str = "zero"       # what the removed units' h was held at (ablation.method; :data:`REMOVAL`)

    @property
    def perplexity_change_pct(self) -> float:
        """The change of the perplexity of those words without the neuron(s) (the mean effect is its log ratio)."""
        return 100 * (float(np.exp(np.nanmean(self.effect[:self.tokens]))) - 1)


@dataclass(frozen=True)
class Removals:
    """What an ablation file removed: the KL state it ranked by, each neuron removed on its own
    ((layer, neuron) -> :class:`Removal`) and each group removed together ((layer, group) -> :class:`Removal`)."""

    state: str
    single: dict[tuple[int, int], Removal]
    groups: dict[tuple[int, str], Removal]


def removal_effects(path: str | os.PathLike, model: str, text: str, words: Sequence[str],
                    checkpoint_sha256: str | None = None) -> Removals:
    """The removals of the ablation file ``path`` with their effects on the words (see :class:`Removals`). The
    file must be the ablation of ``model`` on ``text``, whose words are ``words`` (the ablation may have read
    only the first of them), and, given ``checkpoint_sha256`` (an activations file's), of that checkpoint: two runs
    name their models alike."""
    stored = read_ablation(path)
    if (str(stored.attrs.get("model")), str(stored.attrs.get("text"))) != (model, text):
        raise AblationError(f"{path} is the ablation of model {stored.attrs.get('model')}, text "
                            f"{stored.attrs.get('text')}, not of model {model}, text {text}")
    theirs = str(stored.attrs.get("checkpoint_sha256", ""))
    if checkpoint_sha256 and theirs and theirs != checkpoint_sha256:
        raise AblationError(f"{path} is the ablation of another checkpoint of model {model} (checkpoint_sha256 "
                            f"{theirs[:12]}…, the activations' {checkpoint_sha256[:12]}…): a model of another run?")
    n = len(stored.words)
    if stored.words != list(words[:n]):
        raise AblationError(f"{path}: its {n} words are not the first {n} words of text {text} of model {model}")
    single, groups = {}, {}
    for a, ab in enumerate(stored.ablations):
        effect = np.full(len(words), np.nan)
        effect[:n] = stored.effect(a)
        removal = Removal(ab.group, ab.neurons, effect, n, stored.method)
        if ab.group in ("top", "random") and len(ab.neurons) == 1:
            single[(ab.layer, ab.neurons[0])] = removal
        else:
            groups[(ab.layer, ab.group)] = removal
    return Removals(str(stored.attrs.get("state", "h")), single, groups)


def effect_passage(effect: np.ndarray, tokens: int, avoid: np.ndarray | None = None) -> tuple[int, int]:
    """[start, stop) of the ``tokens`` words where the effect is largest in |value| (the first word has none),
    among the passages holding the fewest ``avoid`` tokens (see :func:`best_window`)."""
    start = best_window(np.nan_to_num(effect), tokens, avoid)
    return start, min(len(effect), start + tokens)


def heatmap_figure(h5_path: str | os.PathLike, table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike,
                   passage_tokens: int, dpi: int = 150, stored: AblationFile | None = None,
                   passage: str = "prose") -> None:
    """Per layer, the effect on each word of the top-KL neuron whose removal changed the perplexity most (up or
    down), over the passage where the effect is largest (``passage``: ``prose`` outside the section headings and
    the tokens after them; ``stored``: the file already read). Each title names the neuron's KL rank and the state
    it is of (the ablation file's ``state``, ablation.state), as the neuron heatmaps do."""
    stored = read_ablation(h5_path) if stored is None else stored
    avoid = passage_avoid(stored.words, passage)
    state = str(stored.attrs.get("state", "h"))  # the state whose KL ranked the neurons (ablation.state)
    if len(stored.ablations) != len(table):  # (ablation_figures checks the table whole: check_table_matches)
        raise AblationError(f"{h5_path} holds {len(stored.ablations)} ablations but the table has {len(table)} rows")
    picked = []  # (head, effect, start, stop) per layer
    for layer in sorted(table["layer"].unique()):
        tops = table[(table["layer"] == layer) & (table["group"] == "top")]
        if tops.empty:  # only random neurons were removed in this layer: show the most changing of those
            tops = table[(table["layer"] == layer) & (table["group"] == "random")]
        best = tops["perplexity_change_pct"].abs().idxmax()
        row = table.loc[best]
        effect = stored.effect(int(best))
        rank = f"KL rank {row['kl_rank']} of {state}" if pd.notna(row["kl_rank"]) else "random"
        picked.append((f"layer {layer}, neuron {row['neurons']} ({rank}): perplexity "
                       f"{shown(row['perplexity_change_pct'], '+.2f')} % without it", effect,
                       *effect_passage(effect, passage_tokens, avoid)))
    # one scale for every layer: a neuron that matters little stays pale beside one that matters much
    norm = symmetric_norm(np.concatenate([effect[start:stop] for _, effect, start, stop in picked]))
    blocks = [effect_block(head, stored.words, effect, start, stop, norm) for head, effect, start, stop in picked]
    draw_blocks(blocks, png, svg, dpi=dpi,
                suptitle=f"{stored.attrs['model']}, text {stored.attrs['text']}: {EFFECT_CAPTION}\n"
                         f"neurons removed: {removal_phrase(stored.method)}")


def ablation_figures(h5_path: str | os.PathLike, csv_path: str | os.PathLike, effects_png: str | os.PathLike,
                     effects_svg: str | os.PathLike, heatmap_png: str | os.PathLike, heatmap_svg: str | os.PathLike,
                     passage_tokens: int, dpi: int = 150, passage: str = "prose") -> None:
    check_passage(passage)
    table = read_ablation_table(csv_path)
    stored = read_ablation(h5_path)
    check_table_matches(table, stored, csv_path, h5_path)
    effects_figure(table, effects_png, effects_svg, dpi=dpi, n_tokens=int(stored.attrs["n_tokens"]),
                   method=stored.method, state=str(stored.attrs.get("state", "h")))
    heatmap_figure(h5_path, table, heatmap_png, heatmap_svg, passage_tokens, dpi=dpi, stored=stored, passage=passage)


def ablation_summary(csv_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Per model and layer: the mean, median, lowest and highest perplexity change of each group."""
    frames = [read_ablation_table(p) for p in csv_paths]
    texts = {str(t) for f in frames for t in f["text"].unique()}
    if len(texts) != 1:
        raise AblationError(f"ablation tables mix texts {sorted(texts)}; give the tables of one text")
    table = pd.concat(frames, ignore_index=True)
    g = table.groupby(["model", "dropout", "layer", "group"], sort=False)["perplexity_change_pct"]
    out = g.agg(ablations="size", mean_change_pct="mean", median_change_pct="median", min_change_pct="min",
                max_change_pct="max")
    out = out.reset_index()
    out["text"] = texts.pop()
    out["group"] = pd.Categorical(out["group"], ORDER, ordered=True)
    return (out.sort_values(["layer", "group", "dropout", "model"], key=models_in_order, kind="stable")
            .reset_index(drop=True))


# between a model's point and the line of its singles' spread, in closest dropouts' gaps: clear of the point's marker
# at the default dropouts (at 0.12 the markers hid the top-KL group's short lines)
SPREAD_SHIFT = 0.2


def spread_gap(dropouts: Sequence[float]) -> float:
    """The smallest gap between two of the figure's dropouts (0.1, the default list's, for a single one): the
    spread lines are set off their points by a fraction of it, so they never reach a neighbouring dropout."""
    ds = np.unique(np.asarray(dropouts, dtype=float))
    return float(np.diff(ds).min()) if len(ds) > 1 else 0.1


def vs_dropout_figure(summary: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, title: str,
                      dpi: int = 150, state: str | None = None) -> None:
    """Per layer, each group's mean perplexity change against dropout (a line through the models' means); for the
    neurons removed one at a time, a thin line from the lowest to the highest change of each model's (its spread;
    the top-KL group's just left of the dropout, the random one's just right); ``state``, whose KL ranked the top
    neurons, in the legend."""
    layers = sorted(summary["layer"].unique())
    gap = spread_gap(summary["dropout"])
    # 4.5 in a panel, plus the legend beside the first row's last one
    fig, panels, first = layer_panels(len(layers), 4.5, 3.6, 1.6)
    entries: dict[str, Line2D] = {}  # the legend: each group's line and marker as drawn, and the spread's line
    for ax, layer in zip(panels, layers):
        sub = summary[summary["layer"] == layer]
        for group in ORDER:
            rows = sub[sub["group"] == group].sort_values("dropout")
            if rows.empty:
                continue
            _, colour, marker = GROUP_STYLE[group]
            by_d = rows.groupby("dropout")["mean_change_pct"].mean()
            style = "-" if group in ("top", "random") else "--"
            ax.plot(by_d.index, by_d.to_numpy(), style, color=colour, lw=1)
            if group in ("top", "random") and "min_change_pct" in rows:
                shift = SPREAD_SHIFT * gap * (-1 if group == "top" else 1)
                ax.vlines(rows["dropout"] + shift, rows["min_change_pct"], rows["max_change_pct"], color=colour,
                          lw=1.2, alpha=0.6, zorder=2)
            ax.scatter(rows["dropout"], rows["mean_change_pct"], color=colour, marker=marker, s=20, zorder=3)
            entries.setdefault(group, Line2D([], [], ls=style, lw=1, color=colour, marker=marker, ms=4.5,
                                             label=group_label(group, state).replace("\n", ", ")
                                             + (" (mean)" if group in ("top", "random") else "")))
            if group in ("top", "random") and "min_change_pct" in rows:
                entries.setdefault("spread", Line2D([], [], ls="none", color="0.45", marker="|", ms=11, mew=1.2,
                                                    label="a model's lowest to highest single removal\n(top-KL: "
                                                          "left of its dropout, random: right)"))
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(sorted(sub["dropout"].unique()))  # one tick per model's dropout
        ax.set_xlim(summary["dropout"].min() - gap / 2, summary["dropout"].max() + gap / 2)
        ax.set_title(f"layer {layer}", fontsize=10)
        ax.set_xlabel("dropout")
        ax.grid(alpha=0.3)
    for ax in first:
        ax.set_ylabel("perplexity change (%)")
    # beside the first row's last panel, never over a point (a layer's largest change can lie anywhere)
    handles = [entries[key] for key in [*ORDER, "spread"] if key in entries]  # the groups in order, the spread last
    panels[min(len(panels), PANELS_PER_ROW) - 1].legend(handles=handles, fontsize=7, loc="upper left",
                                                        bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    save_figure(fig, png, svg, dpi=dpi)


def ablation_vs_dropout(csv_paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike, png: str | os.PathLike,
                        svg: str | os.PathLike, dpi: int = 150, state: str | None = None) -> pd.DataFrame:
    summary = ablation_summary(csv_paths)
    write_table(summary, csv_path, "%.6g")
    models = summary["model"].nunique()
    vs_dropout_figure(summary, png, svg, dpi=dpi, state=state,
                      title=f"Perplexity change without neurons against dropout, text {summary['text'].iloc[0]} "
                            f"({models} model{'s' * (models != 1)})\nthin lines: each model's lowest to highest change "
                            "of a neuron removed on its own")
    log.info("%d models -> %s, %s", summary["model"].nunique(), csv_path, png)
    return summary
