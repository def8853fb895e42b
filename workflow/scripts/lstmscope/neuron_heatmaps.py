"""The neuron heatmaps of the pipeline (rule text_heatmaps, thesis Fig. 5.3/5.4): the top KL neurons of each layer
and state, from the divergence table, drawn over their passages.

Apart from :mod:`lstmscope.heatmap`, which draws the blocks, so that the expectancy figure's rule, which only draws,
does not import the divergence tables' reader: editing :mod:`lstmscope.divergence` does not rerun its jobs.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from .activations_file import open_activations, read_neurons, read_words
from .divergence import check_divergence_fits, ranked, read_divergence
from .figures import STATE_NAMES
from .heatmap import DEFAULT_SCALE, check_scale, draw_blocks, neuron_blocks, notice_figure
from .wikitext import check_passage, passage_avoid


log = logging.getLogger(__name__)


def text_heatmaps(activations_path: str | os.PathLike, divergence_path: str | os.PathLike,
                  outputs: dict[tuple[int, str], tuple[str, str]], neurons: int, passage_tokens: int,
                  dpi: int = 150, scale: str = DEFAULT_SCALE, passage: str = "prose") -> None:
    """For every (layer, state) in ``outputs``: the top ``neurons`` KL neurons drawn as text heatmaps, each over
    the passage chosen by ``passage`` (``prose``: where it is most active outside the section headings and the
    tokens after them, :func:`lstmscope.wikitext.passage_avoid`)."""
    check_scale(scale)  # a wrong scale or passage fails before any work
    check_passage(passage)
    table = read_divergence(divergence_path)
    with open_activations(activations_path) as f:
        words = read_words(f)
        avoid = passage_avoid(words, passage)
        model, text = str(f.attrs["model"]), str(f.attrs["text"])
        check_divergence_fits(table, model, text, int(f.attrs["hidden_size"]), activations_path)
        for (layer, state), (png, svg) in sorted(outputs.items()):
            top = ranked(table, layer, state, neurons)
            if top.empty:  # a figure that says so, rather than no figure for the whole model
                dead = int(((table["layer"] == layer) & (table["state"] == state)).sum())
                message = (f"{model}, text {text}: layer {layer}, {STATE_NAMES[state]}: no live neuron to draw; all "
                           f"{dead} are dead (listed in dead_neurons.csv)")
                log.warning("%s", message)
                notice_figure(message, png, svg, dpi=dpi)
                continue
            cols = np.sort(top["neuron"].to_numpy())
            hs, cs = (read_neurons(f, layer, st, cols) for st in ("h", "c"))
            blocks = []
            for r in top.itertuples():
                j = int(np.searchsorted(cols, r.neuron))
                blocks += neuron_blocks(words, hs[:, j], cs[:, j], layer, int(r.neuron), int(r.rank), state,
                                        passage_tokens, scale, avoid)
            draw_blocks(blocks, png, svg, dpi=dpi,
                        suptitle=f"{model}, text {text}: top {len(top)} neuron{'s' * (len(top) != 1)} of layer {layer} "
                                 f"by KL of {state}")
            log.info("layer%d/%s: heatmaps of neurons %s -> %s", layer, state, top["neuron"].tolist(), png)
