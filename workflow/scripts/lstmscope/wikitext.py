"""The layout of WikiText's text, as the pipeline's tokenisation leaves it: each line (a paragraph, a
blank line or a section heading such as ``= = Film = =``) ends with ``<eos>``.

No plotting here: the heatmaps, the neuron explorer, the cluster figures and the tracking of contexts share it,
as do the passages they choose (the cluster figures without importing the heatmaps and what they import).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .vocabulary import EOS


def heading_tokens(words: Sequence[str]) -> np.ndarray:
    """True for every token of a section heading line of WikiText (``= = Film = = <eos>``: a line, ended by
    ``<eos>``, whose first and last tokens are ``=``; the test split holds two lines that start with ``=`` and are
    prose, ``= National record <eos>``). A text that starts inside a line (an offset) starts with the rest of it,
    whose first token is not the line's: that is a heading's rest if its last token is ``=`` (``Film = = <eos>``).
    A last line that the text's end cuts off is a heading if it starts with ``=``: its end is not there to read. (A
    text that starts at a line that ends with ``=`` but is prose, the test split's ``q =`` and ``N / A =`` near token
    201 690, reads it as a heading's rest: the words alone do not say whether the text starts at a line's start.)"""
    mask = np.zeros(len(words), dtype=bool)
    start = 0
    for i, w in enumerate(words):
        if w == EOS:
            first = words[start]
            # the first line's rest (start 0, not at a line's start): its first token is not the line's
            if (first == "=" or start == 0) and i > start and words[i - 1] == "=":
                mask[start:i + 1] = True
            start = i + 1
    if start < len(words) and words[start] == "=":
        mask[start:] = True
    return mask


PASSAGES = ("prose", "active")  # heatmap.passage: how a neuron's passage is chosen


def check_passage(passage: str) -> None:
    if passage not in PASSAGES:
        raise ValueError(f"heatmap.passage={passage!r}: choose one of {', '.join(PASSAGES)}")


#: Tokens after a section heading (and the blank lines around it) that a ``prose`` passage also avoids: the state
#: still carries the heading there (measured on the default models: with none, a quarter of the passages started
#: right after a heading; with 20, as many as by chance).
HEADING_SETTLE = 20


def passage_avoid(words: Sequence[str], passage: str) -> np.ndarray | None:
    """The tokens a passage chosen by ``passage`` avoids: ``prose`` the section headings, the blank lines (lone
    ``<eos>``) before and after each, and the :data:`HEADING_SETTLE` tokens that follow them; ``active`` none."""
    check_passage(passage)
    if passage != "prose":
        return None
    heading = heading_tokens(words)
    avoid = heading.copy()
    n = len(words)
    for first in np.flatnonzero(heading & ~np.concatenate([[False], heading[:-1]])):  # a heading's first token
        i = first - 1
        while i >= 0 and words[i] == EOS and (i == 0 or words[i - 1] == EOS):  # an <eos> alone on its line
            avoid[i] = True
            i -= 1
    for last in np.flatnonzero(heading & ~np.concatenate([heading[1:], [False]])):  # a heading's last (its <eos>)
        i = last + 1
        while i < n and words[i] == EOS:
            i += 1
        avoid[last + 1:i + HEADING_SETTLE] = True
    return avoid
