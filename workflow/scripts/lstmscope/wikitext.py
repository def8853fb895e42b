"""The layout of WikiText's text, as the pipeline's tokenisation leaves it: each line (a paragraph, a
blank line or a section heading such as ``= = Film = =``) ends with ``<eos>``.

No plotting here: the heatmaps, the neuron explorer and the tracking of contexts share it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .vocabulary import EOS


def heading_tokens(words: Sequence[str]) -> np.ndarray:
    """True for every token of a section heading line of WikiText (``= = Film = = <eos>``: a line, ended by
    ``<eos>``, whose first token is ``=``). A text that starts inside a line (an offset) starts with the rest
    of it, whose first token is not the line's: that is a heading's rest if its last token is ``=``
    (``Film = = <eos>``)."""
    mask = np.zeros(len(words), dtype=bool)
    heading, line_start = False, True
    for i, w in enumerate(words):
        if line_start:
            heading = w == "="
        mask[i] = heading
        line_start = w == EOS
    first_eos = next((i for i, w in enumerate(words) if w == EOS), None)
    if first_eos is not None and first_eos > 0 and words[first_eos - 1] == "=":
        mask[:first_eos + 1] = True
    return mask
