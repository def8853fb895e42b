"""The cluster explorer (thesis Fig. 4.2): one self-contained, offline HTML file per model and text.

Every token is a point on a <canvas>; the page lets one choose layer, state and
linkage, hover a point to read its word in context, search a word to highlight its
points, and click a cluster to list its tokens in context. Given the activations file,
the points can also be coloured by the model's expectancy of each word (blue low, red
high, log scale as the expectancy heatmap). All data and JavaScript are inline (no
network access). Coordinates are rounded to integers on a
0..``SCALE`` grid, which keeps the file small at 18 000 points x several views.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from .activations_file import ActivationsError, open_activations, read_expectancy, read_words
from .atomic import write_text
from .cluster import read_clusters
from .colours import CLUSTER_PALETTE, OTHER_CLUSTERS, SMALL_CLUSTER, colour_table, expectancy_low
from .html_page import page_provenance, render_page
from .points import view_order
from .top_words import DISTINCTIVE_MIN_COUNT

SCALE = 10000
TEMPLATE = Path(__file__).with_name("explorer_template.html")


def quantise(x: np.ndarray, y: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """Interleaved integer coordinates on a 0..scale grid; one scale for both axes (aspect kept)."""
    lo_x, lo_y = x.min(), y.min()
    span = max(x.max() - lo_x, y.max() - lo_y, 1e-12)
    # Centre the shorter axis on the square grid.
    off_x = (span - (x.max() - lo_x)) / 2
    off_y = (span - (y.max() - lo_y)) / 2
    qx = np.rint((x - lo_x + off_x) / span * scale).astype(np.int64)
    qy = np.rint((y - lo_y + off_y) / span * scale).astype(np.int64)
    return np.column_stack([qx, qy]).ravel()


def log10_expectancy(activations: str | os.PathLike, words: list[str], first_position: int) -> np.ndarray:
    """log10 p(word | preceding words) of the tokens ``words`` (from ``first_position`` on) of an activations file;
    NaN where the model had no context (the first token). The file must hold those words there."""
    with open_activations(activations) as f:
        stop = first_position + len(words)
        if read_words(f)[first_position:stop] != words:
            raise ActivationsError(f"{activations}: its tokens {first_position}..{stop - 1} are not the words of the "
                                   "cluster tables (another text or passage)")
        return read_expectancy(f, first_position, stop, log=True) / np.log(10)  # natural log in the file


def explorer_data(cluster_files: Mapping[tuple[int, str, str], str | os.PathLike], title: str,
                  context_tokens: int = 8, activations: str | os.PathLike | None = None,
                  expectancy_floor: float | None = None) -> dict:
    """The explorer's data: words, and per layer x state the coordinates and each linkage's clusters; with
    ``activations``, the log10 expectancy of every word (3 decimals; null without a value), the colour map, the
    low end of its log scale, ``lo``: log10 of ``expectancy_floor`` (None: of the smallest p, at most 0.1), and
    ``below``: how many words lie below it (drawn in its colour)."""
    if not cluster_files:
        raise ValueError("the explorer needs at least one cluster table")
    words: list[str] | None = None
    positions: np.ndarray | None = None
    reference = None
    views: dict[tuple[int, str], dict] = {}
    linkages: list[str] = []
    for (layer, state, linkage), path in sorted(cluster_files.items()):
        table = read_clusters(path)
        if words is None:
            words, positions, reference = table["word"].astype(str).tolist(), table["position"].to_numpy(), path
            if not (np.diff(positions) == 1).all():
                raise ValueError(f"{path}: positions are not consecutive tokens of the text")
        elif len(table) != len(words) or not (table["position"].to_numpy() == positions).all() \
                or table["word"].astype(str).tolist() != words:
            raise ValueError(f"{path}: its tokens differ from those of {reference}; "
                             "all tables of one explorer must come from the same text and max_tokens")
        view = views.get((int(layer), state))
        x, y = table["x"].to_numpy(float), table["y"].to_numpy(float)
        if view is None:
            view = views[(int(layer), state)] = {"layer": int(layer), "state": state,
                                                 "xy": quantise(x, y).tolist(), "clusters": {}, "_xy": (x, y)}
        elif not (np.allclose(view["_xy"][0], x) and np.allclose(view["_xy"][1], y)):
            raise ValueError(f"{path}: its coordinates differ from the other linkage's table of "
                             f"layer {layer} state {state}")
        view["clusters"][linkage] = table["cluster"].astype(int).tolist()
        if linkage not in linkages:
            linkages.append(linkage)
    for view in views.values():
        view.pop("_xy")
        missing = [k for k in linkages if k not in view["clusters"]]
        if missing:
            raise ValueError(f"layer {view['layer']} state {view['state']}: no table for linkage {missing[0]}")
    order = {"ward": 0, "single": 1}
    expectancy = None
    if activations is not None:
        logp = log10_expectancy(activations, words, int(positions[0]))
        lo = expectancy_low(logp, expectancy_floor)
        expectancy = {"log10": [None if not np.isfinite(v) else round(float(v), 3) for v in logp],
                      "lo": lo, "below": int(np.count_nonzero(logp < lo)), "lut": colour_table()}
    return {
        "title": title,
        "expectancy": expectancy,
        "words": words,
        "first_position": int(positions[0]),
        "context": int(context_tokens),
        "scale": SCALE,
        "palette": list(CLUSTER_PALETTE), "other": OTHER_CLUSTERS,  # the figures' colours
        "distinctive_min": DISTINCTIVE_MIN_COUNT,  # as Table 5.1's distinctive words
        "small": SMALL_CLUSTER,  # a cluster of fewer points has each ringed, as in the figures
        "linkages": sorted(linkages, key=lambda k: (order.get(k, 9), k)),
        "views": [views[k] for k in sorted(views, key=view_order)],
    }


def render_explorer(data: dict, template: str | os.PathLike = TEMPLATE) -> str:
    return render_page(data, template)


def build_explorer(cluster_files: Mapping[tuple[int, str, str], str | os.PathLike], output: str | os.PathLike,
                   title: str, context_tokens: int = 8, template: str | os.PathLike = TEMPLATE,
                   activations: str | os.PathLike | None = None, expectancy_floor: float | None = None,
                   rule: str | None = None) -> int:
    """Stage explorer: write the HTML page (the expectancy's colours from ``expectancy_floor`` to 1, as
    ``heatmap.expectancy_floor``; its provenance, :func:`~lstmscope.html_page.page_provenance`, from the tables and
    the activations file, naming the pipeline's ``rule`` where given); returns its size in bytes."""
    data = explorer_data(cluster_files, title, context_tokens, activations, expectancy_floor)
    data["provenance"] = page_provenance([*cluster_files.values(), *([activations] if activations else [])], rule)
    page = render_explorer(data, template)
    write_text(output, page)
    return len(page.encode("utf-8"))
