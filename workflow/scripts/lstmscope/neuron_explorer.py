"""The neuron explorer: one self-contained, offline HTML page per model and text.

The whole text is shown as words; the page colours every word by one neuron's h or c
(blue low, red high, the figures' colour map), or by the model's expectancy of it.
The neurons offered are the top-ranked by KL of every layer and state; hovering a word
gives its values, and a button jumps to the passage where the neuron is most active.

Given the model's ablation file of the same text, every neuron that was removed on its own
(the top-KL ones and the random control) is offered too, in one more view per layer, and
can colour the words by the effect of its removal: log p(word) of the intact model minus
log p(word) without the neuron, in nats (red: the neuron helped predict the word). The same
view offers each group removed together (all top-KL neurons, all random ones): their effect
only, as a group has no h or c of its own.

Values are stored as 8-bit codes on each series' own [min, max] (code 0 = no value,
1..255 evenly spaced), so a page stays small at the thesis's 18 000 tokens; the
tooltip's values are therefore exact to 1/254 of that range. The expectancy is coded
on a log10 scale, from its smallest p (at most 0.1) to 1; its colours run from ``expectancy_floor``
(``heatmap.expectancy_floor``, lower probabilities in its colour) to 1, as in the expectancy figures.
"""
from __future__ import annotations

import base64
import html
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from .ablation_figures import Removal, effect_passage, removal_effects, removal_phrase
from .ablation_file import AblationError, check_divergence_model
from .activations_file import (ActivationsError, layers_and_states, open_activations, read_expectancy,
                               read_neurons, read_words)
from .atomic import write_text
from .colours import VALUE_CMAP, colour_table, expectancy_low
from .divergence import RANK_BY, ranked, ranking_measure, read_divergence
from .heatmap import DEFAULT_SCALE, best_window, check_scale, needs_light_text, text_median
from .histogram import HistogramError
from .html_page import page_provenance, provenance_line, render_page
from .wikitext import check_passage, passage_avoid

TEMPLATE = Path(__file__).with_name("neuron_explorer_template.html")
CMAP = VALUE_CMAP  # the heatmap figures' colour map
LEVELS = 254        # codes 1..255

log = logging.getLogger(__name__)


def encode(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> dict:
    """8-bit codes of ``values`` on [lo, hi] (default: their min and max; values outside are clipped):
    0 = NaN, else 1 + round((v - lo) / (hi - lo) * 254); a constant series is all code 1."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if lo is None or hi is None:
        lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 0.0)
    codes = np.zeros(len(v), dtype=np.uint8)
    if hi > lo:
        codes[finite] = 1 + np.rint((np.clip(v[finite], lo, hi) - lo) / (hi - lo) * LEVELS)
    else:
        codes[finite] = 1
    return {"lo": float(lo), "hi": float(hi), "q": base64.b64encode(codes.tobytes()).decode("ascii")}


def decode(series: dict, length: int | None = None) -> np.ndarray:
    """The values of :func:`encode`'s codes (NaN for code 0), padded with NaN to ``length`` as the page does
    (a removal's effect is stored only for the words the ablation read)."""
    codes = np.frombuffer(base64.b64decode(series["q"]), dtype=np.uint8).astype(np.float64)
    out = np.full(max(len(codes), length or 0), np.nan)
    out[:len(codes)] = series["lo"] + (codes - 1) / LEVELS * (series["hi"] - series["lo"])
    out[:len(codes)][codes == 0] = np.nan
    return out


def light_text_table(name: str = CMAP, n: int = 256) -> list[int]:
    """1 where a colour of :func:`colour_table` gets white text (as the heatmap figures: the darkest fills)."""
    return needs_light_text(colormaps[name].resampled(n)(np.arange(n))).astype(int).tolist()


def _row(r, rank) -> dict:
    return {"neuron": int(r.neuron), "rank": rank, "kl_sum": float(r.kl_sum), "kl_pq": float(r.kl_pq),
            "kl_qp": float(r.kl_qp), "mean": float(r.mean), "std": float(r.std)}


def ablation_views(ablation_path: str | os.PathLike, table: pd.DataFrame, model: str, text: str,
                   words: list[str], passage_tokens: int, avoid: np.ndarray | None,
                   checkpoint_sha256: str | None = None) -> tuple[list[dict], dict[str, dict]]:
    """Per layer, a view of the neurons removed one at a time in ``ablation_path``, then of each group removed
    together; and per removal, what its series gets (key ``layer:neuron`` or ``layer:group``): the coded
    effect on the words the ablation read (nats; no value at the first word), the perplexity change in %,
    its group and that number of words (a group: and the neurons removed; it has no h or c of its own), and the
    start of the ``passage_tokens`` words among those read where it matters most, as the ablation heatmap's
    (:func:`~.ablation_figures.effect_passage`, ``avoid`` as there)."""
    removals = removal_effects(ablation_path, model, text, words, checkpoint_sha256)
    views: dict[int, list] = {}
    extra = {}
    for (layer, j), removal in removals.single.items():
        info = table[(table["layer"] == layer) & (table["state"] == removals.state) & (table["neuron"] == j)]
        if info.empty:
            raise AblationError(f"{ablation_path}: neuron {j} of layer {layer} is not in the divergence table")
        r = next(info.itertuples())
        row = _row(r, None if pd.isna(r.rank) else int(r.rank))
        row.update(group=removal.group, perplexity_change_pct=removal.perplexity_change_pct)
        views.setdefault(layer, []).append(row)
        extra[f"{layer}:{j}"] = _effect_series(removal, passage_tokens, avoid)
    for (layer, group), removal in removals.groups.items():
        key = f"{layer}:{group}"
        views.setdefault(layer, []).append({"neuron": None, "series": key, "group": group,
                                            "removed": list(removal.neurons),
                                            "perplexity_change_pct": removal.perplexity_change_pct})
        extra[key] = {**_effect_series(removal, passage_tokens, avoid), "removed": list(removal.neurons)}
    return [{"layer": layer, "state": removals.state, "ablated": True, "neurons": rows}
            for layer, rows in sorted(views.items())], extra


def _effect_series(r: Removal, passage_tokens: int, avoid: np.ndarray | None) -> dict:
    effect = r.effect[:r.tokens]
    start, _ = effect_passage(effect, passage_tokens, None if avoid is None else avoid[:r.tokens])
    return {"effect": {**encode(effect), "peak": start}, "change": r.perplexity_change_pct,
            "group": r.group, "tokens": r.tokens,  # the page pads the effect with "no value"
            "held": removal_phrase(r.method)}


def neuron_explorer_data(activations_path: str | os.PathLike, divergence_path: str | os.PathLike,
                         neurons: int | None, passage_tokens: int, title: str,
                         ablation_path: str | os.PathLike | None = None, passage: str = "prose",
                         expectancy_floor: float | None = None,
                         median_from: str | os.PathLike | None = None) -> dict:
    """The page's data: words, expectancy (coloured from ``expectancy_floor`` to 1; None: from its smallest p, at
    most 0.1), and per layer and state the top ``neurons`` (None: every live one)
    with their h and c;
    with ``ablation_path``, also the neurons removed one at a time there, with the effect of each removal.
    Each series' ``peak`` is the start of its "most active passage" of ``passage_tokens`` (``passage`` as
    ``heatmap.passage``), found on the exact values as the heatmap figures find theirs. With ``median_from``
    (another activations file of the same checkpoint: the caller checks it) each h and c series carries its
    ``median`` over that file's text (``median_text``), the median scale's middle (by default the page takes the
    series' own median over this text)."""
    if neurons is not None and neurons < 1:
        raise ValueError(f"neurons={neurons}: must be >= 1")
    check_passage(passage)
    table = read_divergence(divergence_path)
    views, series = [], {}
    with open_activations(activations_path) as f:
        words = read_words(f)
        logp = read_expectancy(f, log=True) / np.log(10)  # the file's natural log, as log10
        # offset: where the text starts in its split; the page numbers tokens from the text's start, as every other
        # output does, and gives offset + i beside that only as the split's position
        model, text, offset = str(f.attrs["model"]), str(f.attrs["text"]), int(f.attrs.get("offset", 0))
        own_text = str(f.attrs.get("split", "")) == "file"  # lstmscope-dump's: ranked on another text's table
        avoid = passage_avoid(words, passage)  # what a "most active passage" avoids, as in the figures
        check_divergence_model(table, model, divergence_path)
        hidden = int(f.attrs["hidden_size"])
        have = {(int(layer), str(state)) for layer, state in zip(table["layer"], table["state"])}
        lacking = [f"layer {layer} {state}" for layer, state in layers_and_states(f) if (layer, state) not in have]
        if lacking:
            raise HistogramError(f"{divergence_path} has no rows of {', '.join(lacking)}, which {activations_path} "
                                 "holds: the table of another model?")
        layers = sorted({layer for layer, _ in layers_and_states(f)})
        foreign = ~table["layer"].isin(layers) | (table["neuron"] >= hidden)
        if foreign.any():
            i = int(np.argmax(foreign.to_numpy()))
            raise HistogramError(f"{divergence_path}: line {i + 2} has layer {table['layer'].iloc[i]} neuron "
                                 f"{table['neuron'].iloc[i]}, which {activations_path} lacks (layers "
                                 f"{layers[0]}-{layers[-1]}, neurons 0-{hidden - 1}): the table of another model?")
        own_table = not own_text and set(table["text"].astype(str)) == {text}  # the table of this very text
        wanted: dict[int, set[int]] = {}  # layer -> neurons offered in any of its views
        for layer, state in layers_and_states(f):
            offered = ranked(table, layer, state, len(table) if neurons is None else neurons)
            rows = [_row(r, int(r.rank)) for r in offered.itertuples()]
            if not rows:  # every neuron of it is dead: nothing to offer
                log.warning("%s: layer%d/%s has no live (ranked) neuron: no view of it", divergence_path, layer, state)
                continue
            views.append({"layer": layer, "state": state, "neurons": rows})
        effects = {}
        if ablation_path is not None:
            removed, effects = ablation_views(ablation_path, table, model, text, words, passage_tokens, avoid,
                                              str(f.attrs.get("checkpoint_sha256", "")) or None)
            views += removed
        if not views:
            raise ValueError(f"{divergence_path}: no layer or state has a live (ranked) neuron to offer")
        for view in views:
            for r in view["neurons"]:
                if r["neuron"] is None:  # a group removed together: its effect only
                    continue
                if not 0 <= r["neuron"] < hidden:
                    raise ActivationsError(f"{divergence_path}: neuron {r['neuron']} of layer {view['layer']} is not "
                                           f"in {activations_path} (hidden size {hidden})")
                wanted.setdefault(view["layer"], set()).add(r["neuron"])
        for layer, js in wanted.items():
            cols = sorted(js)
            # one read of the wanted columns per dataset: every HDF5 chunk is read once, not once per neuron
            values = {s: read_neurons(f, layer, s, cols, dtype=None) for s in ("h", "c")}
            if own_table:
                check_table_values(table, divergence_path, activations_path, layer, cols, values)
            for k, j in enumerate(cols):
                # the passage the page's button goes to, found on the exact values as the figures find theirs (on
                # the page's 8-bit codes a near tie could go the other way)
                series[f"{layer}:{j}"] = {s: {**encode(values[s][:, k]),
                                              "peak": best_window(values[s][:, k], passage_tokens, avoid)}
                                          for s in ("h", "c")}
    median_text = None
    if median_from is not None:
        with open_activations(median_from) as g:
            median_text = str(g.attrs["text"])
            for layer, js in wanted.items():
                cols = sorted(js)
                for s in ("h", "c"):
                    values = read_neurons(g, layer, s, cols, dtype=None)
                    for k, j in enumerate(cols):
                        series[f"{layer}:{j}"][s]["median"] = text_median(values[:, k])
    for key, extra in effects.items():
        series.setdefault(key, {}).update(extra)
    expectancy = encode(logp, expectancy_low(logp), 0.0)  # log scale, smallest p (<= 0.1) to 1: none clipped
    expectancy["floor"] = expectancy_low(logp, expectancy_floor)  # the colours' low end, as the figures'
    expectancy["below"] = int(np.count_nonzero(logp < expectancy["floor"]))  # words in its colour (exact p)
    expectancy["peak"] = best_window(np.nan_to_num(logp), passage_tokens, avoid)  # the least expected passage
    measure = ranking_measure(table)  # the ranks' measure, named beside each neuron
    ranked_texts = sorted(set(table["text"].astype(str)))  # a text of one's own is ranked on a pipeline text's table
    return {"title": title, "model": model, "text": text, "offset": offset, "words": words,
            "rank_by": measure, "rank_by_name": RANK_BY[measure],
            "ranked_on": None if ranked_texts == [text] and not own_text else ", ".join(ranked_texts),
            "median_text": median_text, "passage": int(passage_tokens), "lut": colour_table(),
            "light": light_text_table(), "expectancy": expectancy, "views": views, "series": series}


def check_table_values(table: pd.DataFrame, divergence_path: str | os.PathLike, activations_path: str | os.PathLike,
                       layer: int, cols: list[int], values: dict[str, np.ndarray]) -> None:
    """The divergence table of a text holds each neuron's minimum and maximum over it: those of ``values`` (the
    columns ``cols`` of ``layer``'s h and c in the activations file), or the table is another run's (two runs
    name their models alike)."""
    spans = table.set_index(["layer", "state", "neuron"])[["min", "max"]]
    for s, v in values.items():
        stored = spans.reindex(pd.MultiIndex.from_product([[layer], [s], cols])).to_numpy(np.float64)  # NaN: no row
        v = np.asarray(v, dtype=np.float64)
        seen = np.stack([v.min(axis=0), v.max(axis=0)], axis=1)
        wrong = ~np.isclose(seen, stored, rtol=1e-5, atol=1e-7).all(axis=1)
        if wrong.any():
            k = int(np.argmax(wrong))
            j, (lo, hi) = cols[k], stored[k]
            if np.isnan(stored[k]).any():
                raise HistogramError(f"{divergence_path} has no row of neuron {j} of layer {layer} {s}")
            raise HistogramError(f"{divergence_path} is not the divergence table of {activations_path}: neuron "
                                 f"{j} of layer {layer} {s} spans {lo:.6g}..{hi:.6g} there, "
                                 f"{seen[k, 0]:.6g}..{seen[k, 1]:.6g} in the activations (another run's table?)")


# The largest page the one-file Snakemake report shows: it embeds a page as a base64 ``data:`` address (4/3 of the
# page's bytes), and Chrome, Chromium and Edge show none over 2 MB (2 097 152 characters): 1.5 MB leaves a margin.
REPORT_PAGE_BYTES = 1_500_000


def _offering(data: dict, k: int) -> dict:
    """``data`` offering only the top ``k`` neurons of each layer and state (the removed neurons' views stay
    whole), with the series of the neurons and groups still offered."""
    views = [v if v.get("ablated") else {**v, "neurons": v["neurons"][:k]} for v in data["views"]]
    keep = {r["series"] if r["neuron"] is None else f"{v['layer']}:{r['neuron']}"
            for v in views for r in v["neurons"]}
    return {**data, "views": views, "series": {key: s for key, s in data["series"].items() if key in keep}}


def report_page(data: dict, template: str | os.PathLike, full_page: str, full_path: str,
                limit: int = REPORT_PAGE_BYTES) -> tuple[str, int | None]:
    """The page for the one-file report, at most ``limit`` bytes: ``full_page`` where it fits, else the page
    offering the most top neurons per layer and state that fits (``k``, its title naming them and
    ``full_path``, and the removed neurons where ``data`` offers them), else a short page that says where the whole
    one is (``k`` 0). Returns the page and ``k`` (None: the whole page)."""
    if len(full_page.encode("utf-8")) <= limit:
        return full_page, None
    removed = any(v.get("ablated") for v in data["views"])

    def page_of(k: int) -> str:
        note = (f"the top {k} neurons of each layer and state{' and the removed ones' if removed else ''}"
                f", to fit this report; every neuron offered: {full_path}")
        return render_page({**_offering(data, k), "title": f"{data['title']}\n{note}"}, template)

    # a page grows with k: the largest k that fits by bisection (a page of every neuron of the thesis's size offers
    # 2 000 per view and is ~190 MB: one render per k would take many minutes)
    offered = max((len(v["neurons"]) for v in data["views"] if not v.get("ablated")), default=0)
    fits, lo, hi = None, 1, offered - 1
    while lo <= hi:
        k = (lo + hi) // 2
        page = page_of(k)
        if len(page.encode("utf-8")) <= limit:
            fits, lo = (page, k), k + 1
        else:
            hi = k - 1
    if fits is not None:
        return fits
    size = len(full_page.encode("utf-8")) / 1e6
    why = (", even offering a single top neuron of each layer and state" + (" and the removed ones" if removed else "")
           if offered else "; it offers no top neurons to leave out")
    return (REPORT_STUB.format(title=html.escape(data["title"].replace("\n", " - ")), size=size, why=why,
                               path=html.escape(full_path),
                               provenance=html.escape(provenance_line(data.get("provenance")))), 0)


REPORT_STUB = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; margin: 2em; max-width: 45em">
<h1 style="font-size: 1.2em">{title}</h1>
<p>This neuron explorer page is {size:.1f} MB, more than this one-file report can show (Chrome, Chromium and Edge
show no embedded page over 2 MB as the report encodes it, 1.5 MB on disk){why}. Open the page itself:
<code>{path}</code>.</p>
<footer id="provenance" style="color: #777; font-size: 11px">{provenance}</footer>
</body></html>
"""


def build_neuron_explorer(activations_path: str | os.PathLike, divergence_path: str | os.PathLike,
                          output: str | os.PathLike, neurons: int | None, passage_tokens: int, title: str,
                          template: str | os.PathLike = TEMPLATE,
                          ablation_path: str | os.PathLike | None = None, passage: str = "prose",
                          scale: str = DEFAULT_SCALE, expectancy_floor: float | None = None,
                          report_output: str | os.PathLike | None = None, report_limit: int = REPORT_PAGE_BYTES,
                          median_from: str | os.PathLike | None = None, rule: str | None = None) -> int:
    """Stage neuron_explorer: write the HTML page (opening on the h/c colour ``scale``, as ``heatmap.scale``; the
    expectancy's colours from ``expectancy_floor`` to 1, as ``heatmap.expectancy_floor``), and where
    ``report_output`` is given, the page for the one-file report (:func:`report_page`, naming ``output``); both
    with their provenance (:func:`~lstmscope.html_page.page_provenance`, from the files read). ``median_from``: as
    :func:`neuron_explorer_data`; ``rule``: the pipeline rule writing it, recorded in the provenance. Returns the
    page's size in bytes."""
    data = neuron_explorer_data(activations_path, divergence_path, neurons, passage_tokens, title, ablation_path,
                                passage, expectancy_floor, median_from)
    data["scale"] = check_scale(scale)
    data["provenance"] = page_provenance([activations_path, divergence_path,
                                          *([ablation_path] if ablation_path else []),
                                          *([median_from] if median_from else [])], rule)
    page = render_page(data, template)
    if report_output is not None:
        small, k = report_page(data, template, page, str(output), report_limit)
        write_text(report_output, small)
        log.info("the report's page (%.1f kB): %s", len(small.encode("utf-8")) / 1e3,
                 "this page" if k is None else f"the top {k} neurons of each layer and state" if k else
                 "a note where this page is (no neuron fits)")
    write_text(output, page)
    return len(page.encode("utf-8"))
