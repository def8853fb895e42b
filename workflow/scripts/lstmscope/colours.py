"""Colours of the clusters, shared by the cluster figures and the explorer, and the value colour map of the two
explorer pages (a module of its own, so that a change of colour reruns only the figures and the pages, not the
t-SNE or the clustering)."""
from __future__ import annotations

import numpy as np

# Clusters 1, 2, ... (later clusters: grey): matplotlib's tab10 without its grey, then nine more picked from the
# tab20, Dark2 and web palettes for the largest smallest distance to all before them and to the grey of the rest
# (RGB distance >= 0.26 between any two), so that neighbouring numbers never look like shades of one cluster and
# none is mistaken for the rest's grey.
CLUSTER_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
                   "#000080", "#800000", "#ffbb78", "#e7298a", "#808000", "#4b0082", "#1b9e77", "#9edae5", "#f7b6d2")
OTHER_CLUSTERS = "#b0b0b0"
# A cluster of fewer points has each of them ringed, in the cluster figures and in the explorer (one or two points
# of a colour are otherwise lost among thousands).
SMALL_CLUSTER = 10

#: Values (a neuron's activation, the expectancy, a removal's effect): blue (low) .. light grey .. red (high), in
#: the heatmap figures (``heatmap.CMAP``) and on the explorer pages.
VALUE_CMAP = "coolwarm"

#: The default low end of the expectancy's colour scale (``heatmap.expectancy_floor`` in the config schema, and the
#: commands' ``--expectancy-floor``): below the smallest p of every word of the default run's nine models (2.6e-6).
DEFAULT_EXPECTANCY_FLOOR = 1e-6


def expectancy_low(log10_p: np.ndarray, floor: float | None = None) -> float:
    """The low end of the expectancy's colour scale, as log10 p; its high end is p = 1.

    ``floor`` (a probability, ``heatmap.expectancy_floor``): log10 of it, the same for every figure and page, so
    that a colour means one probability in all of them (lower probabilities take its colour). ``None``: the
    smallest probability of the words drawn, at most 0.1 (NaN, no context, left out)."""
    if floor is not None:
        return float(np.log10(check_expectancy_floor(floor)))
    finite = np.asarray(log10_p, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return min(float(finite.min()) if len(finite) else -1.0, -1.0)


def check_expectancy_floor(floor: float) -> float:
    """A probability strictly between 0 and 1, or ValueError naming it."""
    value = float(floor)
    if not 0.0 < value < 1.0:
        raise ValueError(f"expectancy floor {floor!r}: must be a probability between 0 and 1 (exclusive)")
    return value


def colour_table(name: str = VALUE_CMAP, n: int = 256) -> list[str]:
    """The colour map as ``n`` hex colours (index int(t * n), as matplotlib looks colours up)."""
    from matplotlib import colormaps

    rgba = colormaps[name].resampled(n)(np.arange(n))
    return ["#%02x%02x%02x" % tuple(int(round(255 * c)) for c in row[:3]) for row in rgba]
