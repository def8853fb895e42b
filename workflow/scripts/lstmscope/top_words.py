"""The text of a cluster's most frequent words, ``was (39) · the (30)``, and of its most distinctive ones,
``been (11/11) · . (142/150)``: written into Table 5.1 by ``cluster_measures`` and read back by the figures and
the table's HTML (a module of its own, so that all use one format and neither stage imports the other)."""
from __future__ import annotations


def format_top_words(pairs: list[tuple[str, int]]) -> str:
    return " · ".join(f"{w} ({c})" for w, c in pairs)


def parse_top_words(text: str) -> list[tuple[str, int]]:
    """The pairs :func:`format_top_words` wrote. A token never holds a space, so the text splits back into its
    words unambiguously (a word ``·`` is followed by `` (``, never by `` · ``)."""
    items = [item.rpartition(" (") for item in text.split(" · ")] if text else []
    return [(word, int(count.rstrip(")"))) for word, _, count in items]


#: A word is listed among a cluster's distinctive words only with at least this many tokens in it (Table 5.1 and the
#: explorer's list).
DISTINCTIVE_MIN_COUNT = 3


def format_distinctive_words(triples: list[tuple[str, int, int]]) -> str:
    """``[("been", 11, 11), (".", 142, 150)]`` -> ``"been (11/11) · . (142/150)"`` (tokens in the cluster / among
    the tokens embedded)."""
    return " · ".join(f"{w} ({c}/{n})" for w, c, n in triples)


def parse_distinctive_words(text: str | float) -> list[tuple[str, int, int]]:
    """The triples :func:`format_distinctive_words` wrote; none for an empty cell (which pandas reads as NaN)."""
    out = []
    for item in text.split(" · ") if isinstance(text, str) and text else []:
        word, _, counts = item.rpartition(" (")
        c, _, n = counts.rstrip(")").partition("/")
        out.append((word, int(c), int(n)))
    return out
