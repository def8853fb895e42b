"""The text of a cluster's most frequent words, ``was (39) · the (30)``: written into Table 5.1 by
``cluster_measures`` and read back by the figures (a module of its own, so that both use one format and
neither stage imports the other)."""
from __future__ import annotations


def format_top_words(pairs: list[tuple[str, int]]) -> str:
    return " · ".join(f"{w} ({c})" for w, c in pairs)


def parse_top_words(text: str) -> list[tuple[str, int]]:
    """The pairs :func:`format_top_words` wrote. A token never holds a space, so the text splits back into its
    words unambiguously (a word ``·`` is followed by `` (``, never by `` · ``)."""
    items = [item.rpartition(" (") for item in text.split(" · ")] if text else []
    return [(word, int(count.rstrip(")"))) for word, _, count in items]
